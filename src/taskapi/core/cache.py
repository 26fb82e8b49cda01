"""Cache-aside storage for small serialized values: Redis, shared by every process and host,
or this process's memory when there is no Redis and only one process.

The race every cache-aside store must survive: a reader misses, reads the row, and stores
it; if a writer commits a change and invalidates the key between that read and that store,
a plain SET puts the old row back for a whole TTL. Invalidating before the commit does not
help either (the reader may read the old row after it). So writers invalidate after their
commit (`core.db.after_commit`), and a reader stores only if nothing invalidated the key
since its own lookup:

- Redis: an invalidation overwrites the key with a tombstone unique to that invalidation,
  kept for one TTL; the reader stores with a compare-and-set (one Lua script) against what
  its GET saw, nothing or that very tombstone. A lookup stays a single GET.
- memory: a counter of invalidations; the reader stores only if it has not moved.

Redis failing or timing out is a miss, never an error: the caller reads the database. An
invalidation that cannot reach Redis is kept and delivered, before anything else is read,
as soon as Redis answers again, so a cached row that outlived the outage is not served.

A request that goes to Redis anyway before it looks a key up (the rate limiter does, for
the caller's user) can read the key in the same round trip and hand the value on with
`prefetched`: the store's `get` then answers from it, exactly as from its own GET.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, cast

import structlog
from cachetools import TTLCache
from redis.asyncio import Redis

from taskapi.core.config import Settings
from taskapi.core.redis import REDIS_FAILURES, RedisOutage

MEMORY_CACHE_MAX_ENTRIES = 10_000
TOMBSTONE_PREFIX = b"\x00invalidated:"
"""No serialized value starts with a NUL byte, so a tombstone is never mistaken for one."""

log = structlog.get_logger("taskapi.cache")

_prefetched: ContextVar[dict[str, bytes | None] | None] = ContextVar(
    "taskapi_cache_prefetched", default=None
)


@contextmanager
def prefetched(values: Mapping[str, bytes | None]) -> Iterator[None]:
    """While inside, a Redis store's `get` of one of these Redis keys answers with the value
    given (None: the key was missing) instead of a GET of its own, once: a second look-up,
    or one after an invalidation of the key, reads Redis again. For the current task and
    what it awaits: one request."""
    token = _prefetched.set(dict(values))
    try:
        yield
    finally:
        _prefetched.reset(token)


@dataclass(frozen=True, slots=True)
class Lookup:
    key: str
    value: bytes | None
    """The cached value; None on a miss."""
    guard: object
    """What `fill` checks to tell whether the key was invalidated since; None: don't fill."""


class CacheStore(Protocol):
    async def get(self, key: str) -> Lookup: ...

    async def fill(self, lookup: Lookup, value: bytes) -> None:
        """Store `value` for `lookup.key` unless the key was invalidated since `lookup`."""

    async def invalidate(self, key: str) -> None: ...


# KEYS[1] the key; ARGV the value the reader's GET saw ('' for none), the value, the TTL in ms.
_FILL_IF_UNCHANGED_LUA = """
local current = redis.call('GET', KEYS[1])
if (current or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class RedisCacheStore:
    """Keys under `key_prefix`, shared by every instance that uses the same Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        ttl_seconds: float,
        component: str,
        probe_interval_seconds: float = 1.0,
    ) -> None:
        self._redis = redis
        self._fill_script = redis.register_script(_FILL_IF_UNCHANGED_LUA)
        self._key_prefix = key_prefix
        self._ttl_ms = round(ttl_seconds * 1000)
        self._outage = RedisOutage(
            component,
            effect="reads go to the database until Redis answers again",
            probe_interval_seconds=probe_interval_seconds,
        )
        self._undelivered: set[str] = set()
        """Invalidations Redis has not acknowledged; at most one per key, so this grows with
        the number of distinct keys changed during an outage, nothing else."""

    def redis_key(self, key: str) -> str:
        """Where `key` lives in Redis, for a round trip that reads it along (`prefetched`)."""
        return self._key_prefix + key

    async def get(self, key: str) -> Lookup:
        redis_key = self.redis_key(key)
        early = _prefetched.get()
        # An invalidation still to deliver may concern the value read early: read again.
        if early is not None and redis_key in early and not self._undelivered:
            raw = early.pop(redis_key)
        else:
            if not self._outage.should_try():
                return Lookup(key, None, None)
            try:
                if self._undelivered:
                    await self._deliver_invalidations()
                # create_redis leaves responses undecoded: bytes
                raw = cast("bytes | None", await self._redis.get(redis_key))
            except REDIS_FAILURES as error:
                self._outage.failed(error)
                return Lookup(key, None, None)
            self._outage.succeeded()
        if raw is None:
            return Lookup(key, None, b"")
        if raw.startswith(TOMBSTONE_PREFIX):
            return Lookup(key, None, raw)
        return Lookup(key, raw, raw)

    async def fill(self, lookup: Lookup, value: bytes) -> None:
        if not isinstance(lookup.guard, bytes) or not self._outage.should_try():
            return
        try:
            await self._fill_script(
                keys=[self._key_prefix + lookup.key], args=[lookup.guard, value, self._ttl_ms]
            )
        except REDIS_FAILURES as error:
            self._outage.failed(error)
            return
        self._outage.succeeded()

    async def invalidate(self, key: str) -> None:
        early = _prefetched.get()
        if early is not None:
            early.pop(self.redis_key(key), None)
        self._undelivered.add(key)
        if not self._outage.should_try():
            return
        try:
            await self._deliver_invalidations()
        except REDIS_FAILURES as error:
            self._outage.failed(error)
            return
        self._outage.succeeded()

    async def _deliver_invalidations(self) -> None:
        """One round trip for every pending invalidation (usually just the one)."""
        keys = list(self._undelivered)
        async with self._redis.pipeline(transaction=False) as pipeline:
            for key in keys:
                tombstone = TOMBSTONE_PREFIX + secrets.token_hex(8).encode()
                pipeline.set(self._key_prefix + key, tombstone, px=self._ttl_ms)
            await pipeline.execute()
        self._undelivered.difference_update(keys)


class MemoryCacheStore:
    """This process's memory, at most `max_entries` values (least recently used go first)."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int = MEMORY_CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: TTLCache[str, bytes] = TTLCache(max_entries, ttl_seconds, timer=clock)
        self._invalidations = 0

    async def get(self, key: str) -> Lookup:
        return Lookup(key, self._entries.get(key), self._invalidations)

    async def fill(self, lookup: Lookup, value: bytes) -> None:
        if lookup.guard == self._invalidations:
            self._entries[lookup.key] = value

    async def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)
        self._invalidations += 1


class NoCacheStore:
    """Every lookup misses: for several processes without Redis, where one process's memory
    cannot learn of another's invalidations."""

    async def get(self, key: str) -> Lookup:
        return Lookup(key, None, None)

    async def fill(self, lookup: Lookup, value: bytes) -> None:
        """Nothing is kept."""

    async def invalidate(self, key: str) -> None:
        """Nothing is kept, so nothing goes stale."""


def create_cache_store(
    settings: Settings, redis: Redis | None, *, component: str, ttl_seconds: float
) -> CacheStore:
    """Redis when configured. Without it, memory only on the embedded default (SQLite, one
    worker), which is one process by nature; otherwise nothing, because instances or
    workers that each cache in memory would serve a row another one has changed."""
    if redis is not None:
        return RedisCacheStore(
            redis,
            key_prefix=f"{settings.redis_key_prefix}{component}:",
            ttl_seconds=ttl_seconds,
            component=component,
        )
    if settings.is_sqlite and settings.workers == 1:
        return MemoryCacheStore(ttl_seconds=ttl_seconds)
    log.warning(
        f"{component}_disabled",
        reason="no REDIS_URL and possibly several processes (PostgreSQL or WORKERS > 1)",
        effect="every request reads the database; set REDIS_URL to cache",
    )
    return NoCacheStore()
