from datetime import datetime

import httpx

from taskapi.core.config import Settings
from tests.support.apps import AppFactory, SettingsFactory, make_client

UNREACHABLE_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/none"


async def test_health_ok(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == ("ok" if settings.redis_url else "disabled")
    assert body["version"] == "0.1.0"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


async def test_health_503_when_database_unreachable(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await app_factory(make_settings(database_url=UNREACHABLE_POSTGRES))
    async with make_client(app) as client:
        response = await client.get("/health")
        live = await client.get("/health/live")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["database"] == "error"
    assert live.status_code == 200
    assert live.json() == {"status": "alive"}


async def test_health_503_when_redis_unreachable(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await app_factory(make_settings(redis_url="redis://127.0.0.1:1/0"))
    async with make_client(app) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "error"}
