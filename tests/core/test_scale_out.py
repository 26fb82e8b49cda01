"""Two `taskapi serve` processes on one PostgreSQL and one Redis behave as one service:
limits, revocations, cache invalidations and data written on one hold on the other.

Inherently a PostgreSQL + Redis test: without Redis each process limits on its own, by
design and as documented, and two processes cannot share one embedded SQLite cache. The
SQLite pass skips it; the PostgreSQL + Redis pass runs it.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from tests.support.backends import (
    DatabaseFactory,
    create_test_engine,
    database_env,
)
from tests.support.processes import ServeFactory, Server

pytestmark = pytest.mark.needs_services(
    "postgresql", "redis", reason="instances share state through PostgreSQL and Redis"
)

API = "/api/v1"
PASSWORD = "Str0ng!Passw0rd"
NEW_PASSWORD = "N3w!Passw0rd"


@pytest.fixture
async def shared_prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"taskapi-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_anonymous_limit_is_shared_by_two_processes(
    serve: ServeFactory,
    new_database_url: DatabaseFactory,
    redis_url: str,
    shared_prefix: str,
) -> None:
    env = {
        "APP_ENV": "production",
        **database_env(await new_database_url()),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": shared_prefix,
        "WORKERS": "1",
        "ENABLE_RATE_LIMITING": "true",
        "RATE_LIMIT_ANONYMOUS_PER_MINUTE": "20",
        "ENABLE_METRICS": "false",
    }
    first, second = await asyncio.gather(
        asyncio.to_thread(serve, env), asyncio.to_thread(serve, env)
    )

    async def twelve_requests(base_url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            return [(await client.get("/api/v1/does-not-exist")).status_code for _ in range(12)]

    statuses = [
        status
        for batch in await asyncio.gather(
            twelve_requests(first.base_url), twelve_requests(second.base_url)
        )
        for status in batch
    ]
    assert statuses.count(404) == 20
    assert statuses.count(429) == 4
    client = Redis.from_url(redis_url)
    try:
        assert await client.zcard(f"{shared_prefix}ratelimit:ip:127.0.0.1") == 20
    finally:
        await client.aclose()


@dataclass
class Pair:
    """Two instances of one service, and what they share."""

    a: httpx.AsyncClient
    b: httpx.AsyncClient
    database_url: str
    redis: Redis
    prefix: str

    async def register(self) -> dict[str, Any]:
        response = await self.a.post(
            f"{API}/auth/register",
            json={"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def rename_behind_the_apps_back(self, user_id: str, full_name: str) -> None:
        engine = create_test_engine(self.database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE users SET full_name = :name WHERE id = :id"),
                    {"name": full_name, "id": uuid.UUID(user_id)},
                )
        finally:
            await engine.dispose()


@pytest.fixture
async def pair(
    serve: ServeFactory,
    new_database_url: DatabaseFactory,
    redis_url: str,
    shared_prefix: str,
) -> AsyncIterator[Pair]:
    database_url = await new_database_url()
    env = {
        "APP_ENV": "production",
        **database_env(database_url),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": shared_prefix,
        "WORKERS": "1",
        "ENABLE_RATE_LIMITING": "false",
        "ENABLE_METRICS": "false",
        "REQUIRE_EMAIL_VERIFICATION": "false",
    }
    servers: list[Server] = list(
        await asyncio.gather(asyncio.to_thread(serve, env), asyncio.to_thread(serve, env))
    )
    redis = Redis.from_url(redis_url)
    async with (
        httpx.AsyncClient(base_url=servers[0].base_url, timeout=10) as a,
        httpx.AsyncClient(base_url=servers[1].base_url, timeout=10) as b,
    ):
        yield Pair(a, b, database_url, redis, shared_prefix)
    await redis.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_logout_all_on_one_is_refused_by_the_other_although_it_had_the_user_cached(
    pair: Pair,
) -> None:
    registered = await pair.register()
    user_id, headers = registered["user"]["id"], bearer(registered["access_token"])
    assert (await pair.b.get(f"{API}/users/me", headers=headers)).status_code == 200
    cached = await pair.redis.get(f"{pair.prefix}user_cache:{user_id}")
    assert cached is not None
    assert orjson.loads(cached)["full_name"] == "Ada"
    # B answers from the cache: a change made behind the apps' back does not show.
    await pair.rename_behind_the_apps_back(user_id, "Changed Behind")
    assert (await pair.b.get(f"{API}/users/me", headers=headers)).json()["full_name"] == "Ada"

    assert (await pair.a.post(f"{API}/auth/logout-all", headers=headers)).status_code == 204

    for path in ("/users/me", "/tasks"):
        refused = await pair.b.get(f"{API}{path}", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "not_authenticated"


async def test_password_change_on_one_is_seen_by_the_other(pair: Pair) -> None:
    registered = await pair.register()
    headers = bearer(registered["access_token"])
    assert (await pair.b.get(f"{API}/users/me", headers=headers)).status_code == 200

    changed = await pair.a.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 204

    assert (await pair.b.get(f"{API}/users/me", headers=headers)).status_code == 401
    old = await pair.b.post(
        f"{API}/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    new = await pair.b.post(
        f"{API}/auth/login", json={"email": "ada@example.com", "password": NEW_PASSWORD}
    )
    assert new.status_code == 200
    refreshed = await pair.b.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert refreshed.status_code == 200
    me = await pair.b.get(f"{API}/users/me", headers=bearer(refreshed.json()["access_token"]))
    assert me.status_code == 200


async def test_a_task_written_on_one_is_read_and_changed_on_the_other(pair: Pair) -> None:
    headers = bearer((await pair.register())["access_token"])
    created = await pair.a.post(
        f"{API}/tasks", json={"title": "Shared task", "priority": "high"}, headers=headers
    )
    assert created.status_code == 201
    task = created.json()

    read = await pair.b.get(f"{API}/tasks/{task['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json() == task
    listed = await pair.b.get(f"{API}/tasks", headers=headers)
    assert [item["id"] for item in listed.json()["items"]] == [task["id"]]

    patched = await pair.b.patch(
        f"{API}/tasks/{task['id']}", json={"status": "completed", "version": 1}, headers=headers
    )
    assert patched.status_code == 200
    again = await pair.a.get(f"{API}/tasks/{task['id']}", headers=headers)
    assert (again.json()["status"], again.json()["version"]) == ("completed", 2)
    stale = await pair.a.patch(
        f"{API}/tasks/{task['id']}", json={"title": "Too late", "version": 1}, headers=headers
    )
    assert stale.status_code == 409


async def test_a_session_ended_on_one_is_refused_by_the_other_at_once(pair: Pair) -> None:
    registered = await pair.register()
    other = await pair.a.post(
        f"{API}/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert other.status_code == 200
    ended_headers, kept_headers = (
        bearer(registered["access_token"]),
        bearer(other.json()["access_token"]),
    )
    for headers in (ended_headers, kept_headers):
        assert (await pair.b.get(f"{API}/users/me", headers=headers)).status_code == 200
    assert await pair.redis.get(f"{pair.prefix}user_cache:{registered['user']['id']}")
    listed = await pair.a.get(f"{API}/auth/sessions", headers=kept_headers)
    (ended,) = [item["id"] for item in listed.json()["items"] if not item["current"]]

    assert (
        await pair.a.delete(f"{API}/auth/sessions/{ended}", headers=kept_headers)
    ).status_code == 204

    for path in ("/users/me", "/tasks"):
        refused = await pair.b.get(f"{API}{path}", headers=ended_headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "not_authenticated"
    assert (await pair.b.get(f"{API}/users/me", headers=kept_headers)).status_code == 200
    stale = await pair.b.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert stale.status_code == 401
