"""Cache stores and after-commit actions against whichever backend the run provides: the
machine's Redis on the PostgreSQL + Redis pass, process memory on the SQLite pass. The
outage test starts a redis-server of its own and so runs on both passes."""

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from taskapi.core.cache import (
    TOMBSTONE_PREFIX,
    CacheStore,
    MemoryCacheStore,
    NoCacheStore,
    RedisCacheStore,
    create_cache_store,
    prefetched,
)
from taskapi.core.config import Settings
from taskapi.core.db import after_commit
from taskapi.core.redis import create_redis
from tests.support.apps import AppFactory, SettingsFactory, make_client, state_of
from tests.support.backends import redis_bytes
from tests.support.factories import sign_in
from tests.support.processes import OwnRedis

TTL_SECONDS = 900.0
KEY = "some-user-id"
OWN_REDIS = "stops and restarts a redis-server of its own"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_client(redis_url: str | None, redis_prefix: str) -> AsyncIterator[Redis | None]:
    if redis_url is None:
        yield None
        return
    client = create_redis(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(redis_client: Redis | None, redis_prefix: str, clock: FakeClock) -> CacheStore:
    if redis_client is None:
        return MemoryCacheStore(ttl_seconds=TTL_SECONDS, clock=clock)
    return RedisCacheStore(
        redis_client, key_prefix=redis_prefix, ttl_seconds=TTL_SECONDS, component="test_cache"
    )


async def expire(clock: FakeClock, redis_client: Redis | None, redis_prefix: str) -> None:
    """Let KEY's entry reach the end of its TTL: the fake clock moves past it in memory;
    in Redis the entry must carry the TTL, and is then made to expire now."""
    if redis_client is None:
        clock.now += TTL_SECONDS + 1
        return
    assert TTL_SECONDS * 1000 - 5000 < await redis_client.pttl(redis_prefix + KEY) <= 900_000
    await redis_client.pexpire(redis_prefix + KEY, 1)
    await asyncio.sleep(0.05)


async def test_miss_fill_then_hit(store: CacheStore) -> None:
    miss = await store.get(KEY)
    assert miss.value is None
    await store.fill(miss, b'{"name": "Ada"}')
    assert (await store.get(KEY)).value == b'{"name": "Ada"}'
    assert (await store.get("another-key")).value is None


async def test_entry_expires_after_the_ttl(
    store: CacheStore, clock: FakeClock, redis_client: Redis | None, redis_prefix: str
) -> None:
    await store.fill(await store.get(KEY), b"cached")
    clock.now += TTL_SECONDS - 1
    assert (await store.get(KEY)).value == b"cached"
    await expire(clock, redis_client, redis_prefix)
    assert (await store.get(KEY)).value is None


async def test_invalidate_forgets_the_entry(store: CacheStore) -> None:
    await store.fill(await store.get(KEY), b"old")
    await store.invalidate(KEY)
    miss = await store.get(KEY)
    assert miss.value is None
    await store.fill(miss, b"new")
    assert (await store.get(KEY)).value == b"new"


async def test_a_fill_read_before_an_invalidation_is_refused(store: CacheStore) -> None:
    """The stale refill: a reader misses and reads the old row; a writer commits and
    invalidates; only then does the reader's fill arrive. It must not be stored."""
    reader = await store.get(KEY)
    await store.invalidate(KEY)
    await store.fill(reader, b"old row")
    assert (await store.get(KEY)).value is None

    # The same after a previous invalidation left its mark (a tombstone in Redis).
    second_reader = await store.get(KEY)
    await store.invalidate(KEY)
    await store.fill(second_reader, b"old row again")
    assert (await store.get(KEY)).value is None

    # A reader that looked after the last invalidation fills as usual.
    await store.fill(await store.get(KEY), b"new row")
    assert (await store.get(KEY)).value == b"new row"


@pytest.mark.needs_services("redis", reason="Redis tombstones (the memory store has its own test)")
async def test_redis_invalidation_is_a_tombstone_that_is_never_served(
    redis_client: Redis | None, redis_prefix: str, store: CacheStore
) -> None:
    assert redis_client is not None
    await store.fill(await store.get(KEY), b"old")
    await store.invalidate(KEY)
    stored = await redis_bytes(redis_client, redis_prefix + KEY)
    assert stored is not None
    assert stored.startswith(TOMBSTONE_PREFIX)
    assert TTL_SECONDS * 1000 - 5000 < await redis_client.pttl(redis_prefix + KEY) <= 900_000
    assert (await store.get(KEY)).value is None


@pytest.mark.needs_services("redis", reason="a value read along with another Redis round trip")
async def test_a_prefetched_value_answers_the_first_lookup_only(
    redis_client: Redis | None, redis_prefix: str, store: CacheStore
) -> None:
    """Redis holds "stored"; the value handed over is "early": what a lookup answers shows
    where it came from."""
    assert redis_client is not None
    assert isinstance(store, RedisCacheStore)
    await redis_client.set(redis_prefix + KEY, b"stored")
    with prefetched({store.redis_key(KEY): b"early"}):
        first = await store.get(KEY)
        second = await store.get(KEY)
    after = await store.get(KEY)
    assert (first.value, second.value, after.value) == (b"early", b"stored", b"stored")
    assert first.guard == b"early"


@pytest.mark.needs_services("redis", reason="a value read along with another Redis round trip")
async def test_an_invalidation_drops_a_prefetched_value(
    redis_client: Redis | None, redis_prefix: str, store: CacheStore
) -> None:
    assert redis_client is not None
    assert isinstance(store, RedisCacheStore)
    await redis_client.set(redis_prefix + KEY, b"stored")
    with prefetched({store.redis_key(KEY): b"early"}):
        await store.invalidate(KEY)
        lookup = await store.get(KEY)
    assert lookup.value is None
    assert isinstance(lookup.guard, bytes)
    assert lookup.guard.startswith(TOMBSTONE_PREFIX)


@pytest.mark.needs_services("redis", reason="a value read along with another Redis round trip")
async def test_a_prefetched_miss_or_tombstone_guards_the_fill_as_a_get_would(
    redis_client: Redis | None, redis_prefix: str, store: CacheStore
) -> None:
    """A miss read early may be filled; a fill after an invalidation that came after the
    early read is refused, exactly as after a GET of the store's own."""
    assert redis_client is not None
    assert isinstance(store, RedisCacheStore)
    with prefetched({store.redis_key(KEY): None}):
        missed = await store.get(KEY)
    await store.fill(missed, b"filled")
    assert await redis_bytes(redis_client, redis_prefix + KEY) == b"filled"

    with prefetched({store.redis_key(KEY): None}):
        stale = await store.get(KEY)
    await store.invalidate(KEY)
    await store.fill(stale, b"stale")
    stored = await redis_bytes(redis_client, redis_prefix + KEY)
    assert stored is not None
    assert stored.startswith(TOMBSTONE_PREFIX)


async def test_memory_store_is_bounded(clock: FakeClock) -> None:
    store = MemoryCacheStore(ttl_seconds=TTL_SECONDS, max_entries=3, clock=clock)
    for number in range(5):
        key = f"user-{number}"
        await store.fill(await store.get(key), b"x")
    kept = [number for number in range(5) if (await store.get(f"user-{number}")).value]
    assert kept == [2, 3, 4]


async def test_no_cache_store_never_keeps_anything() -> None:
    store = NoCacheStore()
    await store.fill(await store.get(KEY), b"x")
    await store.invalidate(KEY)
    assert (await store.get(KEY)).value is None


@pytest.mark.parametrize(
    ("database_url", "workers", "with_redis", "expected"),
    [
        ("sqlite+aiosqlite:///./one.db", 1, False, MemoryCacheStore),
        ("sqlite+aiosqlite:///./one.db", 2, False, NoCacheStore),
        ("postgresql+asyncpg://db/taskapi", 1, False, NoCacheStore),
        ("postgresql+asyncpg://db/taskapi", 4, True, RedisCacheStore),
        ("sqlite+aiosqlite:///./one.db", 1, True, RedisCacheStore),
    ],
)
async def test_memory_cache_only_where_one_process_is_certain(
    database_url: str, workers: int, with_redis: bool, expected: type
) -> None:
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, workers=workers)
    redis = create_redis("redis://127.0.0.1:1/0") if with_redis else None
    with capture_logs() as logs:
        store = create_cache_store(settings, redis, component="user_cache", ttl_seconds=60)
    if redis is not None:
        await redis.aclose()
    assert type(store) is expected
    disabled = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
    assert disabled == (["user_cache_disabled"] if expected is NoCacheStore else [])


@pytest.mark.needs_services("redis-server", reason=OWN_REDIS)
async def test_redis_outage_is_a_miss_with_one_warning_and_invalidations_wait_for_it(
    own_redis: OwnRedis,
) -> None:
    client = create_redis(own_redis.url)
    store = RedisCacheStore(
        client,
        key_prefix="outage:",
        ttl_seconds=TTL_SECONDS,
        component="user_cache",
        probe_interval_seconds=0,
    )
    try:
        await store.fill(await store.get(KEY), b"old")
        assert (await store.get(KEY)).value == b"old"

        own_redis.stop()
        with capture_logs() as logs:
            lookups = [await store.get(KEY) for _ in range(3)]
            await store.fill(lookups[0], b"not stored")
            await store.invalidate(KEY)  # the row changed during the outage
        assert [lookup.value for lookup in lookups] == [None, None, None]
        assert [(entry["log_level"], entry["event"]) for entry in logs] == [
            ("warning", "user_cache_unavailable")
        ]

        own_redis.start()
        # The entry outlived the outage (a network partition keeps Redis's data).
        await client.set("outage:" + KEY, b"old")
        with capture_logs() as logs:
            after = await store.get(KEY)
        assert after.value is None  # the pending invalidation went first
        stored = await redis_bytes(client, "outage:" + KEY)
        assert stored is not None
        assert stored.startswith(TOMBSTONE_PREFIX)
        assert [(entry["log_level"], entry["event"]) for entry in logs] == [
            ("info", "user_cache_recovered")
        ]
    finally:
        await client.aclose()


@pytest.mark.needs_services("redis-server", reason=OWN_REDIS)
async def test_api_survives_a_redis_outage_and_no_revocation_is_lost(
    make_settings: SettingsFactory,
    app_factory: AppFactory,
    own_redis: OwnRedis,
) -> None:
    """Redis goes away with a user cached: requests are answered from the database with one
    warning; a logout-all made meanwhile still holds once Redis is back, even if the cached
    entry survived the outage (as it does when only the network to Redis was down)."""
    app = await app_factory(make_settings(redis_url=own_redis.url))
    async with state_of(app)["sessionmaker"]() as session:
        ada = await sign_in(session, state_of(app)["settings"])
    key = f"{state_of(app)['settings'].redis_key_prefix}user_cache:{ada.user.id}"
    redis = create_redis(own_redis.url)
    try:
        async with make_client(app) as client:
            assert (await client.get("/api/v1/users/me", headers=ada.headers)).status_code == 200
            survivor = await redis.get(key)
            assert survivor is not None
            assert orjson.loads(survivor)["tokens_valid_after"] is None

            own_redis.stop()
            with capture_logs() as logs:
                during = [
                    (await client.get("/api/v1/users/me", headers=ada.headers)).status_code
                    for _ in range(5)
                ]
                logout_all = await client.post("/api/v1/auth/logout-all", headers=ada.headers)
                revoked = await client.get("/api/v1/users/me", headers=ada.headers)
            assert during == [200] * 5
            assert logout_all.status_code == 204
            assert revoked.status_code == 401
            warnings = [(e["log_level"], e["event"]) for e in logs if e["log_level"] != "info"]
            assert warnings == [("warning", "user_cache_unavailable")]

            own_redis.start()
            await redis.set(key, survivor)
            await asyncio.sleep(1.2)  # past the probe interval: Redis is tried again
            with capture_logs() as logs:
                after = await client.get("/api/v1/users/me", headers=ada.headers)
            assert after.status_code == 401
            assert ("info", "user_cache_recovered") in [
                (entry["log_level"], entry["event"]) for entry in logs
            ]
            # The survivor was replaced: by the tombstone, then by the row as it is now.
            stored = await redis_bytes(redis, key)
            assert stored is not None
            assert orjson.loads(stored)["tokens_valid_after"] is not None
    finally:
        await redis.aclose()


@pytest.mark.needs_services(
    "redis-server", reason="counts the commands a redis-server of its own ran"
)
async def test_a_cache_hit_costs_one_redis_get_and_nothing_else(
    make_settings: SettingsFactory,
    app_factory: AppFactory,
    own_redis: OwnRedis,
) -> None:
    """Counted by a Redis only this test uses (rate limiting is off, as in every test)."""
    app = await app_factory(make_settings(redis_url=own_redis.url))
    async with state_of(app)["sessionmaker"]() as session:
        ada = await sign_in(session, state_of(app)["settings"])
    stats = create_redis(own_redis.url)
    try:
        async with make_client(app) as client:
            assert (await client.get("/api/v1/users/me", headers=ada.headers)).status_code == 200
            await stats.config_resetstat()
            hit = await client.get("/api/v1/users/me", headers=ada.headers)
            assert hit.status_code == 200
            commands = await stats.info("commandstats")
    finally:
        await stats.aclose()
    calls = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in commands.items()}
    calls.pop("config|resetstat")  # this test's own; INFO is counted only after it answers
    assert calls == {"get": 1}


@pytest.mark.needs_services(
    "redis-server", reason="watches the commands a redis-server of its own receives"
)
async def test_with_rate_limiting_an_authenticated_request_is_one_redis_round_trip(
    make_settings: SettingsFactory,
    app_factory: AppFactory,
    own_redis: OwnRedis,
) -> None:
    """The rate limiter's script reads the user cache entry too: MONITOR shows one command
    from the app's connections, the script, and the user's entry read inside it."""
    app = await app_factory(make_settings(redis_url=own_redis.url, enable_rate_limiting=True))
    async with state_of(app)["sessionmaker"]() as session:
        ada = await sign_in(session, state_of(app)["settings"])
    watcher = create_redis(own_redis.url)
    try:
        async with make_client(app) as client, watcher.monitor() as monitor:
            assert (await client.get("/api/v1/users/me", headers=ada.headers)).status_code == 200
            await watcher.echo("start")
            hit = await client.get("/api/v1/users/me", headers=ada.headers)
            await watcher.echo("end")
            seen: list[tuple[str, str]] = []
            started = False
            while True:
                command = await asyncio.wait_for(monitor.next_command(), timeout=5)
                if command["command"] == "ECHO start":
                    started = True
                elif command["command"] == "ECHO end":
                    break
                elif started:
                    seen.append((command["client_type"], command["command"].split()[0]))
    finally:
        await watcher.aclose()
    assert hit.status_code == 200
    assert hit.json()["email"] == ada.user.email
    from_the_app = [name for client_type, name in seen if client_type != "lua"]
    assert from_the_app == ["EVALSHA"]
    assert ("lua", "GET") in seen


async def test_after_commit_runs_before_commit_returns(session: AsyncSession) -> None:
    ran: list[str] = []

    async def action() -> None:
        await asyncio.sleep(0)
        ran.append("invalidated")

    await session.execute(select(1))
    after_commit(session, action)
    await session.flush()
    assert ran == []
    await session.commit()
    assert ran == ["invalidated"]
    await session.commit()  # once only
    assert ran == ["invalidated"]


async def test_after_commit_is_dropped_on_rollback(session: AsyncSession) -> None:
    ran: list[str] = []

    async def action() -> None:
        ran.append("invalidated")

    await session.execute(select(1))
    after_commit(session, action)
    await session.rollback()
    await session.execute(select(1))
    await session.commit()
    assert ran == []


async def test_after_commit_waits_for_the_outer_transaction(session: AsyncSession) -> None:
    ran: list[str] = []

    async def action() -> None:
        ran.append("invalidated")

    await session.execute(select(1))
    async with session.begin_nested():
        after_commit(session, action)
    assert ran == []  # a released SAVEPOINT is not a commit
    await session.commit()
    assert ran == ["invalidated"]
