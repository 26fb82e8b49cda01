from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from taskapi.core.body_limit import MAX_BODY_BYTES
from tests.support.apps import SECURITY_HEADERS, AppFactory, SettingsFactory, make_client

reached: list[str] = []


def authenticate() -> None:
    reached.append("authentication")


probe = APIRouter(prefix="/api/v1/probe-body")


@probe.post("/json")
async def accept_json(
    payload: dict[str, Any], _: Annotated[None, Depends(authenticate)]
) -> dict[str, int]:
    reached.append("handler")
    return {"keys": len(payload)}


@pytest.fixture
async def probe_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    reached.clear()
    app.include_router(probe)
    async with make_client(app) as http:
        yield http


def json_of_size(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    frame = b'{"pad":""}'
    return frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_payload_too_large(response: httpx.Response, request_id: str) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "payload_too_large"
    assert body["status"] == 413
    assert body["request_id"] == request_id
    assert response.headers["x-request-id"] == request_id
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


async def test_body_at_the_limit_is_accepted(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/api/v1/probe-body/json",
        content=json_of_size(MAX_BODY_BYTES),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"keys": 1}
    assert reached == ["authentication", "handler"]


async def test_declared_length_over_limit_is_refused_before_the_app(
    probe_client: httpx.AsyncClient,
) -> None:
    response = await probe_client.post(
        "/api/v1/probe-body/json",
        content=json_of_size(MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/json", "X-Request-ID": "big-1"},
    )
    assert_payload_too_large(response, "big-1")
    assert reached == []


async def test_declared_length_over_limit_on_a_route_that_reads_no_body(
    probe_client: httpx.AsyncClient,
) -> None:
    response = await probe_client.post(
        "/health/live",
        content=b"x" * (MAX_BODY_BYTES + 1),
        headers={"X-Request-ID": "big-2"},
    )
    assert_payload_too_large(response, "big-2")


async def test_chunked_body_over_limit_is_counted_on_the_stream(
    probe_client: httpx.AsyncClient,
) -> None:
    request = probe_client.build_request(
        "POST",
        "/api/v1/probe-body/json",
        content=chunks(json_of_size(MAX_BODY_BYTES + 1)),
        headers={"Content-Type": "application/json", "X-Request-ID": "chunked-1"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await probe_client.send(request)
    assert_payload_too_large(response, "chunked-1")
    assert reached == []


async def test_chunked_body_within_limit_is_accepted(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/api/v1/probe-body/json",
        content=chunks(json_of_size(MAX_BODY_BYTES)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert reached == ["authentication", "handler"]


async def test_oversized_declared_body_is_refused_before_the_rate_limiter(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await app_factory(make_settings(enable_rate_limiting=True))
    async with make_client(app) as client:
        refused = await client.post(
            "/api/v1/does-not-exist",
            content=b"x" * (MAX_BODY_BYTES + 1),
            headers={"X-Request-ID": "big-3"},
        )
        counted = await client.get("/api/v1/does-not-exist")
    assert_payload_too_large(refused, "big-3")
    assert "ratelimit-limit" not in refused.headers
    assert counted.headers["ratelimit-remaining"] == "19"
