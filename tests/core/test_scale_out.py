"""Two `taskapi serve` processes on one PostgreSQL and one Redis behave as one service.

Inherently a PostgreSQL + Redis test: without Redis each process limits on its own, by
design and as documented. The SQLite pass skips it; the PostgreSQL + Redis pass runs it.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.core.conftest import ServeFactory

pytestmark = pytest.mark.skipif(
    POSTGRES_URL is None or REDIS_URL is None,
    reason="needs TEST_DATABASE_URL and TEST_REDIS_URL: limits are shared through Redis",
)


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
    new_database_url: Callable[[], Any],
    redis_url: str,
    shared_prefix: str,
) -> None:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": await new_database_url(),
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
