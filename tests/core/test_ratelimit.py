"""Rate limiting against whichever backend the run provides: the machine's Redis on the
PostgreSQL + Redis pass, the in-process window on the SQLite pass. The outage tests start a
redis-server of their own and so run on both passes."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.ratelimit import (
    MemorySlidingWindow,
    PublicOperations,
    RedisSlidingWindow,
    SlidingWindowLimiter,
)
from taskapi.core.redis import create_redis
from tests.support.apps import SECURITY_HEADERS, AppFactory, SettingsFactory, make_client, state_of
from tests.support.factories import DEFAULT_PASSWORD, create_user, sign_in
from tests.support.processes import OwnRedis

LIMITED_PATH = "/api/v1/does-not-exist"
ANONYMOUS_LIMIT = 5
USER_LIMIT = 8

LimiterFactory = Callable[[float], SlidingWindowLimiter]


@pytest.fixture
async def redis_client(redis_url: str | None) -> AsyncIterator[Redis | None]:
    if redis_url is None:
        yield None
        return
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_limiter(
    redis_client: Redis | None, redis_prefix: str, redis_url: str | None
) -> AsyncIterator[LimiterFactory]:
    def make(window_seconds: float) -> SlidingWindowLimiter:
        if redis_client is None:
            return MemorySlidingWindow(window_seconds=window_seconds)
        return RedisSlidingWindow(
            redis_client, key_prefix=redis_prefix, window_seconds=window_seconds
        )

    yield make
    if redis_client is not None:
        keys = [key async for key in redis_client.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await redis_client.delete(*keys)


async def stored_hits(redis_client: Redis | None, key: str) -> int | None:
    """What Redis holds for a key (None without Redis: the window is process memory)."""
    if redis_client is None:
        return None
    count: int = await redis_client.zcard(key)
    return count


async def test_limiter_allows_the_limit_then_refuses(
    make_limiter: LimiterFactory, redis_client: Redis | None, redis_prefix: str
) -> None:
    limiter = make_limiter(60)
    decisions = [await limiter.hit("ip:192.0.2.1", 5) for _ in range(7)]
    assert all(decision is not None for decision in decisions)
    assert [d.allowed for d in decisions if d] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions if d] == [4, 3, 2, 1, 0, 0, 0]
    assert all(d.limit == 5 and 0 < d.reset_seconds <= 60 for d in decisions if d)
    assert await stored_hits(redis_client, f"{redis_prefix}ip:192.0.2.1") in (5, None)
    if redis_client is not None:
        ttl_ms = await redis_client.pttl(f"{redis_prefix}ip:192.0.2.1")
        assert 0 < ttl_ms <= 60_000


async def test_limiter_keys_are_independent(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(60)
    for _ in range(3):
        await limiter.hit("user:a", 3)
    refused = await limiter.hit("user:a", 3)
    other = await limiter.hit("user:b", 3)
    assert refused is not None
    assert not refused.allowed
    assert other is not None
    assert other.allowed
    assert other.remaining == 2


async def test_window_slides(
    make_limiter: LimiterFactory, redis_client: Redis | None, redis_prefix: str
) -> None:
    """Hits at t=0 and t=1 s with a 2 s window and a limit of 2: just after t=2 s the first
    has left the window and the second has not, so exactly one more request fits. A fixed
    window would have reset both."""
    window = 2.0
    limiter = make_limiter(window)
    first_at = time.monotonic()
    first = await limiter.hit("k", 2)
    await asyncio.sleep(1.0)
    second = await limiter.hit("k", 2)
    refused = await limiter.hit("k", 2)
    assert first is not None
    assert second is not None
    assert refused is not None
    assert (first.allowed, second.allowed, refused.allowed) == (True, True, False)
    assert 0 < refused.reset_seconds <= window - 0.9

    await asyncio.sleep(max(0.0, first_at + window + 0.2 - time.monotonic()))
    after_first_left = await limiter.hit("k", 2)
    still_full = await limiter.hit("k", 2)
    assert after_first_left is not None
    assert still_full is not None
    assert after_first_left.allowed
    assert after_first_left.remaining == 0
    assert not still_full.allowed
    assert await stored_hits(redis_client, f"{redis_prefix}k") in (2, None)


async def test_memory_window_forgets_idle_clients() -> None:
    now = [1000.0]
    limiter = MemorySlidingWindow(window_seconds=10, clock=lambda: now[0])
    for client in range(50):
        await limiter.hit(f"ip:10.0.0.{client}", 20)
    now[0] += 11
    decision = await limiter.hit("ip:10.0.0.200", 20)
    assert decision.allowed
    assert list(limiter._hits) == ["ip:10.0.0.200"]


@pytest.fixture
def limited_settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        enable_rate_limiting=True,
        rate_limit_anonymous_per_minute=ANONYMOUS_LIMIT,
        rate_limit_user_per_minute=USER_LIMIT,
    )


@pytest.fixture
async def limited_app(app_factory: AppFactory, limited_settings: Settings) -> Any:
    return await app_factory(limited_settings)


@pytest.fixture
async def limited_client(limited_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(limited_app) as http:
        yield http


@pytest.fixture
async def limited_session(limited_app: FastAPI) -> AsyncIterator[AsyncSession]:
    async with state_of(limited_app)["sessionmaker"]() as db_session:
        yield db_session


def assert_rate_limit_headers(response: httpx.Response, *, limit: int, remaining: int) -> None:
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == str(remaining)
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 60


async def test_anonymous_limit_then_429_problem(
    limited_client: httpx.AsyncClient, redis_client: Redis | None, redis_prefix: str
) -> None:
    for remaining in range(ANONYMOUS_LIMIT - 1, -1, -1):
        response = await limited_client.get(LIMITED_PATH)
        assert response.status_code == 404
        assert_rate_limit_headers(response, limit=ANONYMOUS_LIMIT, remaining=remaining)

    refused = await limited_client.get(LIMITED_PATH, headers={"X-Request-ID": "over-limit-1"})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["code"] == "rate_limited"
    assert body["status"] == 429
    assert body["request_id"] == "over-limit-1"
    assert refused.headers["x-request-id"] == "over-limit-1"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert_rate_limit_headers(refused, limit=ANONYMOUS_LIMIT, remaining=0)
    for name, value in SECURITY_HEADERS.items():
        assert refused.headers[name] == value
    assert refused.headers["cache-control"] == "no-store"
    hits = await stored_hits(redis_client, f"{redis_prefix}ratelimit:ip:127.0.0.1")
    assert hits in (ANONYMOUS_LIMIT, None)


async def test_user_limit_is_per_user(
    limited_client: httpx.AsyncClient,
    limited_session: AsyncSession,
    limited_settings: Settings,
    redis_client: Redis | None,
    redis_prefix: str,
) -> None:
    alice = await sign_in(limited_session, limited_settings)
    bob = await sign_in(limited_session, limited_settings)
    for remaining in range(USER_LIMIT - 1, -1, -1):
        response = await limited_client.get(LIMITED_PATH, headers=alice.headers)
        assert response.status_code == 404
        assert_rate_limit_headers(response, limit=USER_LIMIT, remaining=remaining)
    refused = await limited_client.get(LIMITED_PATH, headers=alice.headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"

    other_user = await limited_client.get(LIMITED_PATH, headers=bob.headers)
    assert other_user.status_code == 404
    assert_rate_limit_headers(other_user, limit=USER_LIMIT, remaining=USER_LIMIT - 1)
    anonymous = await limited_client.get(LIMITED_PATH)
    assert anonymous.status_code == 404
    assert_rate_limit_headers(anonymous, limit=ANONYMOUS_LIMIT, remaining=ANONYMOUS_LIMIT - 1)
    hits = await stored_hits(redis_client, f"{redis_prefix}ratelimit:user:{alice.user.id}")
    assert hits in (USER_LIMIT, None)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer "],
)
async def test_invalid_token_counts_as_anonymous(
    limited_client: httpx.AsyncClient, authorization: str
) -> None:
    response = await limited_client.get(LIMITED_PATH, headers={"Authorization": authorization})
    assert_rate_limit_headers(response, limit=ANONYMOUS_LIMIT, remaining=ANONYMOUS_LIMIT - 1)


async def test_token_of_another_secret_counts_as_anonymous(
    limited_client: httpx.AsyncClient,
    limited_session: AsyncSession,
    make_settings: SettingsFactory,
) -> None:
    foreign = make_settings(jwt_secret_key="another-secret-" + "y" * 32)
    signed = await sign_in(limited_session, foreign)
    response = await limited_client.get(LIMITED_PATH, headers=signed.headers)
    assert_rate_limit_headers(response, limit=ANONYMOUS_LIMIT, remaining=ANONYMOUS_LIMIT - 1)


PUBLIC_OPERATIONS = [
    "/api/v1/auth/register",
    "/api/v1/auth/verify-email",
    "/api/v1/auth/resend-verification",
    "/api/v1/auth/login",
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/auth/forgot-password",
    "/api/v1/auth/reset-password",
]


async def test_the_public_operations_are_those_without_security(limited_app: FastAPI) -> None:
    """What the limiter treats as public comes from the document: these, and nothing that
    takes a bearer token."""
    public = PublicOperations(limited_app.openapi())
    document = limited_app.openapi()["paths"]
    api_operations = [
        (method.upper(), path)
        for path, operations in document.items()
        for method in operations
        if path.startswith("/api/")
    ]
    assert sorted(path for method, path in api_operations if (method, path) in public) == sorted(
        PUBLIC_OPERATIONS
    )
    assert all(method == "POST" for method, path in api_operations if path in PUBLIC_OPERATIONS)
    assert ("POST", "/api/v1/auth/logout-all") not in public
    assert ("GET", "/api/v1/tasks/00000000-0000-0000-0000-000000000000") not in public


@pytest.mark.parametrize("path", PUBLIC_OPERATIONS)
async def test_a_bearer_never_lifts_the_client_ip_limit_of_a_public_operation(
    limited_client: httpx.AsyncClient,
    limited_session: AsyncSession,
    limited_settings: Settings,
    path: str,
) -> None:
    """Issue 17: any valid access token moved sign-in, registration and the email routes
    into that user's larger bucket (forgot-password: 429, then 202 x40 with a bearer)."""
    signed = await sign_in(limited_session, limited_settings)
    for remaining in range(ANONYMOUS_LIMIT - 1, -1, -1):
        response = await limited_client.post(path, json={}, headers=signed.headers)
        assert response.status_code == 400, response.text
        assert_rate_limit_headers(response, limit=ANONYMOUS_LIMIT, remaining=remaining)
    with_bearer = await limited_client.post(path, json={}, headers=signed.headers)
    assert with_bearer.status_code == 429
    assert with_bearer.json()["code"] == "rate_limited"
    without = await limited_client.post(path, json={})
    assert without.status_code == 429
    elsewhere = await limited_client.get(LIMITED_PATH, headers=signed.headers)
    assert elsewhere.status_code == 404, "the user's own bucket is untouched"
    assert_rate_limit_headers(elsewhere, limit=USER_LIMIT, remaining=USER_LIMIT - 1)


ACCOUNT_LIMIT = 3


async def test_sign_ins_are_limited_per_target_account(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    """However many client IPs (here: a client IP limit out of reach), one account takes
    RATE_LIMIT_LOGIN_PER_ACCOUNT_PER_MINUTE sign-in attempts a minute, JSON and form
    together; the next is a 429 before its password is checked, and other accounts are
    not affected."""
    settings = make_settings(
        enable_rate_limiting=True,
        rate_limit_anonymous_per_minute=1000,
        rate_limit_login_per_account_per_minute=ACCOUNT_LIMIT,
    )
    app = await app_factory(settings)
    async with state_of(app)["sessionmaker"]() as session:
        alice = await create_user(session)
        bob = await create_user(session)
    wrong = "Wr0ng!Passw0rd"
    async with make_client(app) as client:
        answers = [
            await client.post("/api/v1/auth/login", json={"email": alice.email, "password": wrong}),
            await client.post(
                "/api/v1/auth/token", data={"username": alice.email, "password": wrong}
            ),
            await client.post(
                "/api/v1/auth/login", json={"email": alice.email.upper(), "password": wrong}
            ),
        ]
        refused = await client.post(
            "/api/v1/auth/login", json={"email": alice.email, "password": DEFAULT_PASSWORD}
        )
        other = await client.post(
            "/api/v1/auth/login", json={"email": bob.email, "password": DEFAULT_PASSWORD}
        )
        unknown = [
            await client.post(
                "/api/v1/auth/login", json={"email": "nobody@example.com", "password": wrong}
            )
            for _ in range(ACCOUNT_LIMIT + 1)
        ]
    assert [answer.status_code for answer in answers] == [401] * ACCOUNT_LIMIT
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert other.status_code == 200, other.text
    assert [answer.status_code for answer in unknown] == [401] * ACCOUNT_LIMIT + [429]
    async with state_of(app)["sessionmaker"]() as session:
        attempts = await session.scalar(
            select(User.failed_login_attempts).where(User.id == alice.id)
        )
    assert attempts == ACCOUNT_LIMIT, "the refused attempt was never checked"


async def test_per_account_limit_is_off_with_rate_limiting(client: httpx.AsyncClient) -> None:
    for _ in range(12):
        response = await client.post(
            "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "Wr0ng!Pass"}
        )
        assert response.status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/health/live",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/",
        "/tasks/anything",
        "/static/js/main.js",
    ],
)
async def test_operational_paths_are_not_limited(
    limited_client: httpx.AsyncClient, path: str
) -> None:
    for _ in range(ANONYMOUS_LIMIT + 2):
        response = await limited_client.get(path)
        assert response.status_code == 200
        assert "ratelimit-limit" not in response.headers
    after = await limited_client.get(LIMITED_PATH)
    assert_rate_limit_headers(after, limit=ANONYMOUS_LIMIT, remaining=ANONYMOUS_LIMIT - 1)


async def test_disabled_rate_limiting_sends_no_headers(client: httpx.AsyncClient) -> None:
    for _ in range(30):
        response = await client.get(LIMITED_PATH)
        assert response.status_code == 404
    assert "ratelimit-limit" not in response.headers


async def test_default_limits_21st_anonymous_and_101st_user_request(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    settings = make_settings(enable_rate_limiting=True)
    assert (settings.rate_limit_anonymous_per_minute, settings.rate_limit_user_per_minute) == (
        20,
        100,
    )
    app = await app_factory(settings)
    async with state_of(app)["sessionmaker"]() as session:
        signed = await sign_in(session, settings)
    async with make_client(app) as client:
        anonymous = [(await client.get(LIMITED_PATH)).status_code for _ in range(21)]
        user = [
            (await client.get(LIMITED_PATH, headers=signed.headers)).status_code for _ in range(101)
        ]
    assert anonymous == [404] * 20 + [429]
    assert user == [404] * 100 + [429]


@pytest.mark.needs_services("redis-server", reason="stops and restarts a redis-server of its own")
async def test_redis_outage_fails_open_with_one_warning_per_outage(
    make_settings: SettingsFactory,
    app_factory: AppFactory,
    own_redis: OwnRedis,
) -> None:
    settings = make_settings(
        redis_url=own_redis.url, enable_rate_limiting=True, rate_limit_anonymous_per_minute=3
    )
    app = await app_factory(settings)
    async with state_of(app)["sessionmaker"]() as session:
        signed = await sign_in(session, settings)
    async with make_client(app) as client:
        before = await client.get(LIMITED_PATH)
        assert before.status_code == 404
        assert_rate_limit_headers(before, limit=3, remaining=2)
        assert (await client.get("/health")).json()["checks"]["redis"] == "ok"

        own_redis.stop()
        with capture_logs() as logs:
            served = [(await client.get(LIMITED_PATH)) for _ in range(10)]
            await asyncio.sleep(1.2)  # past the probe interval: Redis is tried and fails again
            served += [(await client.get(LIMITED_PATH)) for _ in range(10)]
            # The API itself keeps working, writes included, as the signed-in user.
            created = await client.post(
                "/api/v1/tasks", json={"title": "Written without Redis"}, headers=signed.headers
            )
            listed = await client.get("/api/v1/tasks", headers=signed.headers)
            health = await client.get("/health")
            live = await client.get("/health/live")
        assert created.status_code == 201, created.text
        assert listed.status_code == 200
        assert [task["id"] for task in listed.json()["items"]] == [created.json()["id"]]
        assert "ratelimit-limit" not in listed.headers
        assert [response.status_code for response in served] == [404] * 20
        assert all("ratelimit-limit" not in response.headers for response in served)
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["redis"] == "error"
        assert live.status_code == 200
        # One warning per component that uses Redis, not one per request: the limiter, and
        # the user cache the signed-in calls went through (a miss, then the database).
        warnings = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
        assert sorted(warnings) == ["rate_limiter_unavailable", "user_cache_unavailable"]

        own_redis.start()
        with capture_logs() as logs:
            await asyncio.sleep(1.2)
            recovered = await client.get(LIMITED_PATH)
            assert recovered.status_code == 404
            assert_rate_limit_headers(recovered, limit=3, remaining=2)
            own_redis.stop()
            again = [(await client.get(LIMITED_PATH)).status_code for _ in range(5)]
        assert again == [404] * 5
        events = [(e["log_level"], e["event"]) for e in logs if e["event"] != "request"]
        assert events == [
            ("info", "rate_limiter_recovered"),
            ("warning", "rate_limiter_unavailable"),
        ]


async def test_redis_that_never_answers_times_out_and_fails_open() -> None:
    """A Redis that accepts connections and then says nothing (a hung server, a black-holed
    network): the client's short timeout ends the wait and the request is let through."""
    connections: list[asyncio.StreamWriter] = []

    async def accept_and_stay_silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = create_redis(f"redis://127.0.0.1:{port}/0")
    limiter = RedisSlidingWindow(redis, key_prefix="silent:", probe_interval_seconds=0)
    try:
        with capture_logs() as logs:
            decisions = [await limiter.hit("ip:192.0.2.9", 5) for _ in range(2)]
    finally:
        await redis.aclose()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    assert decisions == [None, None]
    assert connections
    assert [(e["log_level"], e["event"], e["error"]) for e in logs] == [
        ("warning", "rate_limiter_unavailable", "TimeoutError")
    ]
