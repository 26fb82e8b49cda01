"""Sliding-window rate limiting: per client IP on the operations that authenticate nobody
(sign-in, registration, refresh, the emailed links), whatever token comes along; elsewhere
per user for a valid access token, else per client IP. Sign-ins are also limited per target
account (`limit_attempts_on_account`), so many addresses cannot guess one password faster.

Why our own Lua script rather than the `limits` library: its moving-window strategy takes
one round trip to record a hit and a second one (`get_window_stats`) for what the
`RateLimit-Remaining` and `RateLimit-Reset` headers need, and keeps a Redis list per key.
The script below does trim, count, conditional add and expiry and returns
allowed/remaining/reset in ONE round trip, atomically (Redis runs a script alone), on one
sorted set per key. It reads Redis's own clock, so every instance on every host slides the
same window however their clocks drift.

For a user's request the same script also reads that user's entry of the user cache (KEYS[2])
and hands it to the cache store (`core.cache.prefetched`): an authenticated request costs one
Redis round trip, not two. Both keys are plain keys of one Redis (no Cluster slots).

Without Redis the same window lives in process memory (one process only, as documented).
When Redis errors or times out the request goes through: a limiter outage must not become
an API outage. `RedisOutage` logs one warning when an outage starts and one info line when
Redis answers again, and meanwhile lets Redis be tried at most once per
`probe_interval_seconds`, so a hung Redis costs one request its timeout, not every request.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

from redis.asyncio import Redis
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskapi.core.cache import prefetched
from taskapi.core.config import Settings
from taskapi.core.errors import RateLimited, request_id_in, send_problem
from taskapi.core.metrics import BoundedCounter
from taskapi.core.redis import REDIS_FAILURES, RedisOutage
from taskapi.core.security import InvalidToken, bearer_token, decode_access_token, hash_token
from taskapi.core.state import lifespan_state

WINDOW_SECONDS = 60.0
LIMITED_PREFIX = "/api/"
"""Only the API is limited. Health checks, metrics, the docs and the web app's pages and
files are not: one page load alone fetches a dozen static files."""


REJECTIONS = BoundedCounter(
    "rate_limit_rejections_total",
    "Requests refused with 429 by the rate limiter, by who was limited.",
    label="scope",
    values=("user", "anonymous", "account"),
)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    """Until the oldest counted request leaves the window, i.e. one more request fits."""
    read_along: Mapping[str, bytes | None] = field(default_factory=dict)
    """The keys asked for with `read_along`, as Redis had them (None: missing)."""


class SlidingWindowLimiter(Protocol):
    async def hit(self, key: str, limit: int, *, read_along: str | None = None) -> Decision | None:
        """Count a request for `key` if it fits; None means "could not decide, let it in".
        A limiter in Redis also reads the Redis key `read_along` in the same round trip."""


# KEYS[1] the key, KEYS[2] (optional) a key to read along; ARGV limit, window in
# microseconds, a unique member for this request. A refused request is not recorded, so
# hammering while limited does not extend the wait.
_SLIDING_WINDOW_LUA = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local along = false
if KEYS[2] then
  along = redis.call('GET', KEYS[2])
end
return {allowed, limit - count, tonumber(oldest[2]) + window - now, along}
"""


class RedisSlidingWindow:
    """Shared by every process and host that uses the same Redis and key prefix."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        window_seconds: float = WINDOW_SECONDS,
        probe_interval_seconds: float = 1.0,
    ) -> None:
        self._script = redis.register_script(_SLIDING_WINDOW_LUA)
        self._key_prefix = key_prefix
        self._window_us = round(window_seconds * 1_000_000)
        self._member_prefix = secrets.token_hex(6)
        self._members = itertools.count()
        self._outage = RedisOutage(
            "rate_limiter",
            effect="requests are not rate limited until Redis answers again",
            probe_interval_seconds=probe_interval_seconds,
        )

    async def hit(self, key: str, limit: int, *, read_along: str | None = None) -> Decision | None:
        if not self._outage.should_try():
            return None
        member = f"{self._member_prefix}:{next(self._members)}"
        keys = (
            [self._key_prefix + key] if read_along is None else [self._key_prefix + key, read_along]
        )
        try:
            allowed, remaining, reset_us, along = await self._script(
                keys=keys, args=[limit, self._window_us, member]
            )
        except REDIS_FAILURES as error:
            self._outage.failed(error)
            return None
        self._outage.succeeded()
        return Decision(
            allowed=bool(allowed),
            limit=limit,
            remaining=int(remaining),
            reset_seconds=int(reset_us) / 1_000_000,
            read_along={} if read_along is None else {read_along: along},
        )


class MemorySlidingWindow:
    """The same window in this process's memory, for a single process without Redis."""

    def __init__(
        self,
        *,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_seconds
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = clock() + window_seconds

    async def hit(
        self,
        key: str,
        limit: int,
        *,
        read_along: str | None = None,  # noqa: ARG002 (a Redis key: memory has none to read)
    ) -> Decision:
        now = self._clock()
        cutoff = now - self._window
        if now >= self._next_sweep:
            self._forget_idle_keys(cutoff)
            self._next_sweep = now + self._window
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= cutoff:
            hits.popleft()
        allowed = len(hits) < limit
        if allowed:
            hits.append(now)
        return Decision(
            allowed=allowed,
            limit=limit,
            remaining=limit - len(hits),
            reset_seconds=self._window - (now - hits[0]),
        )

    def _forget_idle_keys(self, cutoff: float) -> None:
        """Once per window drop clients whose every hit has expired, so memory follows the
        number of recent clients, not of all clients ever seen."""
        idle = [key for key, hits in self._hits.items() if not hits or hits[-1] <= cutoff]
        for key in idle:
            del self._hits[key]


def create_rate_limiter(settings: Settings, redis: Redis | None) -> SlidingWindowLimiter:
    if redis is None:
        return MemorySlidingWindow()
    return RedisSlidingWindow(redis, key_prefix=settings.redis_key_prefix + "ratelimit:")


class RateLimitState(TypedDict):
    rate_limiter: SlidingWindowLimiter
    read_along_for_user: Callable[[uuid.UUID], str | None]
    """The Redis key the limiter reads along for a user's request (their user cache entry),
    or None for none."""


class PublicOperations:
    """The operations the app's OpenAPI document lists without a security requirement:
    those a bearer token does not authenticate, so it must not choose their rate limit.

    Read from the document on first use (the routes are all in place by then), so a new
    route is classed by how it authenticates, not by a list kept here."""

    def __init__(self, openapi: dict[str, Any]) -> None:
        exact: set[tuple[str, str]] = set()
        templated: list[tuple[str, re.Pattern[str]]] = []
        for path, operations in openapi["paths"].items():
            for method, operation in operations.items():
                if operation.get("security") != []:
                    continue
                if "{" in path:
                    templated.append((method.upper(), compile_path(path)[0]))
                else:
                    exact.add((method.upper(), path))
        self._exact = frozenset(exact)
        self._templated = tuple(templated)

    def __contains__(self, request: tuple[str, str]) -> bool:
        method, path = request
        return request in self._exact or any(
            method == public_method and pattern.match(path)
            for public_method, pattern in self._templated
        )


class RateLimitMiddleware:
    """Counts every request except health, metrics and docs, before the app sees it, with
    the limiter the lifespan created (`RateLimitState`)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._public: PublicOperations | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return

        if self._public is None:
            self._public = PublicOperations(scope["app"].openapi())
        key, limit, limited_scope, user_id = self._identify(scope, self._public)
        state = lifespan_state(scope, RateLimitState)
        read_along = None if user_id is None else state["read_along_for_user"](user_id)
        decision = await state["rate_limiter"].hit(key, limit, read_along=read_along)
        if decision is None:
            await self.app(scope, receive, send)
            return

        headers = _rate_limit_headers(decision)
        if not decision.allowed:
            REJECTIONS.inc(limited_scope)
            await _send_too_many_requests(scope, send, decision, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        with prefetched(decision.read_along):
            await self.app(scope, receive, send_with_headers)

    def _identify(
        self, scope: Scope, public: PublicOperations
    ) -> tuple[str, int, str, uuid.UUID | None]:
        """(key, limit, scope label, user id): the user of a valid access token, else the
        client IP.
        An invalid or expired token is anonymous: it must not buy the larger user limit; nor
        may any token on a public operation (each registration would be a fresh bucket)."""
        token = None if (scope["method"], scope["path"]) in public else bearer_token(scope)
        if token is not None:
            try:
                claims = decode_access_token(settings=self.settings, token=token)
            except InvalidToken:
                pass
            else:
                return (
                    f"user:{claims.user_id}",
                    self.settings.rate_limit_user_per_minute,
                    "user",
                    claims.user_id,
                )
        client = scope.get("client")
        host = client[0] if client else "unknown"
        return f"ip:{host}", self.settings.rate_limit_anonymous_per_minute, "anonymous", None


async def limit_attempts_on_account(scope: Scope, settings: Settings, *, account: str) -> None:
    """Count an attempt on one account (a sign-in, by its email) whoever makes it; over
    RATE_LIMIT_LOGIN_PER_ACCOUNT_PER_MINUTE it is a 429 before any password is checked.

    The key is the address's hash: no email in Redis. The answer's `RateLimit-*` headers
    stay those of the client IP's window; `Retry-After` is this account's."""
    if not settings.enable_rate_limiting:
        return
    limiter = lifespan_state(scope, RateLimitState)["rate_limiter"]
    decision = await limiter.hit(
        f"account:{hash_token(account)}", settings.rate_limit_login_per_account_per_minute
    )
    if decision is None or decision.allowed:
        return
    REJECTIONS.inc("account")
    retry_after = max(1, math.ceil(decision.reset_seconds))
    raise RateLimited(
        f"Too many sign-in attempts on this account; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


def _rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(math.ceil(decision.reset_seconds)).encode()),
    ]


async def _send_too_many_requests(
    scope: Scope, send: Send, decision: Decision, headers: list[tuple[bytes, bytes]]
) -> None:
    retry_after = max(1, math.ceil(decision.reset_seconds))
    await send_problem(
        send,
        status=429,
        code=RateLimited.code,
        detail=f"Too many requests; retry in {retry_after} s.",
        request_id=request_id_in(scope),
        headers=[(b"retry-after", str(retry_after).encode()), *headers],
    )
