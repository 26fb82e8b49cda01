import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.apps import SECURITY_HEADERS, AppFactory, SettingsFactory, make_client


async def test_request_id_generated(client: httpx.AsyncClient) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_sane_incoming_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "edge-abc.123"})
    assert response.headers["x-request-id"] == "edge-abc.123"


@pytest.mark.parametrize("bad", ["a" * 129, "has space", "semi;colon", "<script>"])
async def test_insane_incoming_request_id_is_replaced(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": bad})
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32


async def test_security_headers_on_success_and_error(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/health"), await client.get("/api/v1/missing")):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        assert "strict-transport-security" not in response.headers
    assert (await client.get("/api/v1/missing")).headers["cache-control"] == "no-store"


async def test_hsts_in_production(make_settings: SettingsFactory, app_factory: AppFactory) -> None:
    app = await app_factory(
        make_settings(app_env="production", jwt_secret_key="s" * 40, email_backend="console")
    )
    async with make_client(app) as client:
        response = await client.get("/api/v1/missing")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_one_structured_log_line_per_request(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        response = await client.get("/api/v1/missing", headers={"X-Request-ID": "trace-1"})
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/missing"
    assert line["status"] == response.status_code == 404
    assert isinstance(line["duration_ms"], float)
    assert line["user_id"] is None
