"""The client IP comes from X-Forwarded-For only when the direct peer (127.0.0.1 in these
tests) is a trusted proxy; it is the rightmost address that is not itself trusted."""

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from redis.asyncio import Redis

from tests.support.apps import AppFactory, SettingsFactory, make_client

probe = APIRouter(prefix="/api/v1/probe-client")


@probe.get("")
async def client_address(request: Request) -> dict[str, str | None]:
    return {"host": request.client.host if request.client else None, "scheme": request.url.scheme}


async def start(
    make_settings: SettingsFactory, app_factory: AppFactory, **overrides: Any
) -> FastAPI:
    app: FastAPI = await app_factory(
        make_settings(enable_rate_limiting=True, rate_limit_anonymous_per_minute=2, **overrides)
    )
    app.include_router(probe)
    return app


async def seen_as(client: httpx.AsyncClient, forwarded_for: str | None) -> str:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = await client.get("/api/v1/probe-client", headers=headers)
    assert response.status_code == 200
    host: str = response.json()["host"]
    return host


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "expected"),
    [
        (["127.0.0.1"], "203.0.113.7", "203.0.113.7"),
        (["127.0.0.0/8"], "203.0.113.7", "203.0.113.7"),
        (["127.0.0.1", "10.0.0.0/8"], "198.51.100.9, 203.0.113.7, 10.1.2.3", "203.0.113.7"),
        (["127.0.0.1"], "198.51.100.9, 203.0.113.7", "203.0.113.7"),
        (["127.0.0.1"], None, "127.0.0.1"),
        ([], "203.0.113.7", "127.0.0.1"),
        (["10.0.0.1"], "203.0.113.7", "127.0.0.1"),
    ],
)
async def test_client_address(
    make_settings: SettingsFactory,
    app_factory: AppFactory,
    trusted: list[str],
    forwarded_for: str | None,
    expected: str,
) -> None:
    app = await start(make_settings, app_factory, trusted_proxies=trusted)
    async with make_client(app) as client:
        assert await seen_as(client, forwarded_for) == expected


async def test_forwarded_proto_from_trusted_proxy(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await start(make_settings, app_factory, trusted_proxies=["127.0.0.1"])
    async with make_client(app) as client:
        response = await client.get("/api/v1/probe-client", headers={"X-Forwarded-Proto": "https"})
    assert response.json()["scheme"] == "https"


async def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
    make_settings: SettingsFactory,
    app_factory: AppFactory,
    redis_url: str | None,
    redis_prefix: str,
) -> None:
    app = await start(make_settings, app_factory, trusted_proxies=["127.0.0.1"])
    async with make_client(app) as client:
        first = [
            (await client.get("/api/v1/x", headers={"X-Forwarded-For": "203.0.113.7"})).status_code
            for _ in range(3)
        ]
        second = await client.get("/api/v1/x", headers={"X-Forwarded-For": "203.0.113.8"})
    assert first == [404, 404, 429]
    assert second.status_code == 404
    assert second.headers["ratelimit-remaining"] == "1"
    if redis_url is not None:
        redis = Redis.from_url(redis_url)
        try:
            assert await redis.zcard(f"{redis_prefix}ratelimit:ip:203.0.113.7") == 2
            assert await redis.zcard(f"{redis_prefix}ratelimit:ip:203.0.113.8") == 1
            assert await redis.zcard(f"{redis_prefix}ratelimit:ip:127.0.0.1") == 0
        finally:
            await redis.aclose()


async def test_untrusted_peer_cannot_escape_its_limit_by_forging_the_header(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await start(make_settings, app_factory, trusted_proxies=["10.0.0.1"])
    async with make_client(app) as client:
        statuses = [
            (
                await client.get("/api/v1/x", headers={"X-Forwarded-For": f"203.0.113.{n}"})
            ).status_code
            for n in range(3)
        ]
    assert statuses == [404, 404, 429]
