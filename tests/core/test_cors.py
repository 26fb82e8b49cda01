import httpx
import pytest

from tests.support.apps import SECURITY_HEADERS, AppFactory, SettingsFactory, make_client

ALLOWED = "https://app.example"
REFUSED = "https://evil.example"
PATH = "/api/v1/does-not-exist"


@pytest.fixture
async def cors_client(make_settings: SettingsFactory, app_factory: AppFactory) -> httpx.AsyncClient:
    app = await app_factory(make_settings(cors_origins=[ALLOWED], enable_rate_limiting=True))
    return make_client(app)


def preflight_headers(origin: str, method: str = "PATCH") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": (
            "authorization, content-type, idempotency-key, if-match, x-request-id"
        ),
    }


async def test_allowed_origin_gets_credentials_and_exposed_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    async with cors_client as client:
        response = await client.get(PATH, headers={"Origin": ALLOWED})
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    exposed = {
        name.strip().lower()
        for name in response.headers["access-control-expose-headers"].split(",")
    }
    assert exposed == {
        "x-request-id",
        "etag",
        "idempotent-replayed",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    }
    assert "origin" in response.headers["vary"].lower()


async def test_refused_origin_gets_no_cors_headers(cors_client: httpx.AsyncClient) -> None:
    async with cors_client as client:
        response = await client.get(PATH, headers={"Origin": REFUSED})
    assert response.status_code == 404
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_for_allowed_origin(cors_client: httpx.AsyncClient) -> None:
    async with cors_client as client:
        response = await client.options(PATH, headers=preflight_headers(ALLOWED))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "PATCH" in response.headers["access-control-allow-methods"].split(", ")
    allowed_headers = {
        name.strip().lower() for name in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "if-match", "x-request-id"} <= allowed_headers
    assert "ratelimit-limit" not in response.headers
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["x-request-id"]


async def test_preflight_for_refused_origin(cors_client: httpx.AsyncClient) -> None:
    async with cors_client as client:
        response = await client.options(PATH, headers=preflight_headers(REFUSED))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


async def test_preflight_for_a_header_not_allowed(cors_client: httpx.AsyncClient) -> None:
    async with cors_client as client:
        response = await client.options(
            PATH,
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-secret-admin",
            },
        )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("app_env", "origin", "allowed"),
    [
        ("development", "http://localhost:3000", True),
        ("development", "http://localhost:8000", True),
        ("development", "https://app.example", False),
        ("production", "http://localhost:3000", False),
        ("test", "http://localhost:3000", False),
    ],
)
async def test_empty_cors_origins_by_environment(
    make_settings: SettingsFactory,
    app_factory: AppFactory,
    app_env: str,
    origin: str,
    allowed: bool,
) -> None:
    settings = make_settings(
        app_env=app_env, jwt_secret_key="cors-test-secret-" + "z" * 32, email_backend="console"
    )
    assert settings.cors_origins == []
    app = await app_factory(settings)
    async with make_client(app) as client:
        response = await client.get(PATH, headers={"Origin": origin})
    assert (response.headers.get("access-control-allow-origin") == origin) is allowed
