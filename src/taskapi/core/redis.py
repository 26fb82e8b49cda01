"""The shared Redis client, with short timeouts and at most one quick retry because every
caller fails open, and the outage bookkeeping those callers share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypedDict

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

REDIS_TIMEOUT_SECONDS = 0.5
REDIS_FAILURES = (RedisError, OSError)
"""What a Redis call raises when Redis is down, unreachable or too slow."""

log = structlog.get_logger("taskapi.redis")


class RedisState(TypedDict):
    redis: Redis | None
    """None without REDIS_URL."""


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


class RedisOutage:
    """Whether Redis is failing for one component (`rate_limiter`, `user_cache`).

    One warning, `<component>_unavailable`, when an outage starts and one info line,
    `<component>_recovered`, when Redis answers again: never a line per request. While it
    fails, `should_try` lets one call through per `probe_interval_seconds`, so a hung Redis
    costs one request its timeout, not every request.
    """

    def __init__(
        self,
        component: str,
        *,
        effect: str,
        probe_interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._component = component
        self._effect = effect
        self._probe_interval = probe_interval_seconds
        self._clock = clock
        self._failing = False
        self._next_probe = 0.0

    def should_try(self) -> bool:
        return not self._failing or self._clock() >= self._next_probe

    def failed(self, error: BaseException) -> None:
        self._next_probe = self._clock() + self._probe_interval
        if not self._failing:
            self._failing = True
            log.warning(
                f"{self._component}_unavailable",
                error=type(error).__name__,
                detail=str(error),
                effect=self._effect,
            )

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.info(f"{self._component}_recovered")
