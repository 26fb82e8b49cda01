"""The shared Redis client: short timeouts, because every caller fails open."""

from __future__ import annotations

from redis.asyncio import Redis

REDIS_TIMEOUT_SECONDS = 0.5


def create_redis(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
        max_connections=100,
    )
