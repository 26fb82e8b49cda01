"""The shared Redis client: short timeouts and at most one quick retry, because every
caller fails open."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

REDIS_TIMEOUT_SECONDS = 0.5


def create_redis(url: str) -> Redis:
    # redis-py's default retries ten times with backoff up to a second: with Redis down
    # that is seconds per request. One immediate retry on a connection error still replaces
    # a pooled connection that a Redis restart closed; a timeout is not retried, so a hung
    # Redis costs a caller one timeout.
    return Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=30,
        max_connections=100,
    )
