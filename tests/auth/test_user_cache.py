"""The user cache through the API, on the backend the run provides: process memory on the
SQLite pass, Redis on the PostgreSQL + Redis pass. Every change to a user must be seen by
the very next request, although that request would otherwise be served from the cache."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import DetachedInstanceError

from taskapi.auth import service
from taskapi.auth.cache import CACHED_USER_COLUMNS, REVOKED_FAMILIES, USER_CACHE_TTL, UserCache
from taskapi.auth.models import User
from taskapi.core.cache import MemoryCacheStore
from taskapi.core.config import Settings
from taskapi.core.redis import create_redis
from taskapi.core.security import PasswordHasher
from tests.support.apps import state_of
from tests.support.auth import (
    API,
    OTHER_PASSWORD,
    STRONG_PASSWORD,
    Mailbox,
    bearer,
    change_user,
    login,
    register,
    stored_user,
)
from tests.support.backends import redis_bytes
from tests.support.factories import DEFAULT_PASSWORD, SignedIn, sign_in
from tests.support.problems import assert_problem

EMAIL = "ada@example.com"
ME = f"{API}/users/me"
TASKS = f"{API}/tasks"
_READS_USERS = re.compile(r"\bFROM users\b", re.IGNORECASE)
CACHED_FIELDS = {column.key for column in CACHED_USER_COLUMNS} | {REVOKED_FAMILIES}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class CacheBackend:
    """What the test needs to see of the app's user cache, whichever store it is."""

    app: FastAPI
    redis: Redis | None
    prefix: str
    clock: FakeClock

    def key(self, user_id: Any) -> str:
        return f"{self.prefix}user_cache:{user_id}"

    async def payload(self, user_id: Any) -> bytes | None:
        if self.redis is not None:
            return await redis_bytes(self.redis, self.key(user_id))
        cache: UserCache = state_of(self.app)["user_cache"]
        return (await cache._store.get(str(user_id))).value

    async def expire(self, user_id: Any) -> None:
        """Take the entry to the end of its TTL, after checking it is 15 minutes."""
        if self.redis is None:
            self.clock.now += USER_CACHE_TTL.total_seconds() + 1
            return
        remaining_ms = await self.redis.pttl(self.key(user_id))
        assert 895_000 < remaining_ms <= 900_000
        await self.redis.pexpire(self.key(user_id), 1)
        await asyncio.sleep(0.05)


@pytest.fixture
async def backend(
    app: FastAPI, redis_url: str | None, redis_prefix: str
) -> AsyncIterator[CacheBackend]:
    clock = FakeClock()
    if redis_url is None:
        assert isinstance(state_of(app)["user_cache"]._store, MemoryCacheStore)
        state_of(app)["user_cache"] = UserCache(
            MemoryCacheStore(ttl_seconds=USER_CACHE_TTL.total_seconds(), clock=clock)
        )
        yield CacheBackend(app, None, redis_prefix, clock)
        return
    client = create_redis(redis_url)
    yield CacheBackend(app, client, redis_prefix, clock)
    await client.aclose()


@pytest.fixture
def user_reads(app: FastAPI) -> Iterator[list[str]]:
    """Every statement that reads the users table, as the database receives it."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _READS_USERS.search(statement):
            statements.append(statement)

    event.listen(state_of(app)["engine"].sync_engine, "before_cursor_execute", record)
    yield statements
    event.remove(state_of(app)["engine"].sync_engine, "before_cursor_execute", record)


@dataclass
class Probe:
    client: httpx.AsyncClient
    reads: list[str]

    async def get(self, path: str, headers: dict[str, str]) -> tuple[httpx.Response, int]:
        """The answer and how many times it read the users table."""
        self.reads.clear()
        response = await self.client.get(path, headers=headers)
        return response, len(self.reads)

    async def warm(self, headers: dict[str, str]) -> dict[str, Any]:
        """Bring the user into the cache and prove the next request is served from it."""
        first, _ = await self.get(ME, headers)
        assert first.status_code == 200, first.text
        second, reads = await self.get(ME, headers)
        assert second.status_code == 200
        assert reads == 0
        body: dict[str, Any] = second.json()
        assert body == first.json()
        return body


@pytest.fixture
def probe(client: httpx.AsyncClient, user_reads: list[str], backend: CacheBackend) -> Probe:
    return Probe(client, user_reads)


def as_stored(user: Any) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "full_name": user.full_name,
        "is_active": user.is_active,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def parsed(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "created_at": datetime.fromisoformat(body["created_at"]),
        "updated_at": datetime.fromisoformat(body["updated_at"]),
    }


@pytest.fixture
async def ada(session: AsyncSession, settings: Settings) -> SignedIn:
    return await sign_in(session, settings, email=EMAIL)


async def test_a_hit_reads_no_user_row(
    probe: Probe, session: AsyncSession, ada: SignedIn, backend: CacheBackend
) -> None:
    first, reads = await probe.get(ME, ada.headers)
    assert first.status_code == 200
    assert reads == 1
    for path in (ME, TASKS):
        response, reads = await probe.get(path, ada.headers)
        assert response.status_code == 200
        assert reads == 0
    assert parsed(first.json()) == as_stored(await stored_user(session, EMAIL))

    payload = await backend.payload(ada.user.id)
    assert payload is not None
    cached = orjson.loads(payload)
    assert set(cached) == CACHED_FIELDS  # no password hash, no token hash
    assert cached["id"] == str(ada.user.id)
    assert cached[REVOKED_FAMILIES] == []


async def test_entry_expires_after_15_minutes(
    probe: Probe, ada: SignedIn, backend: CacheBackend
) -> None:
    await probe.warm(ada.headers)
    if backend.redis is None:
        backend.clock.now += USER_CACHE_TTL.total_seconds() - 1
        assert (await probe.get(ME, ada.headers))[1] == 0
    await backend.expire(ada.user.id)
    response, reads = await probe.get(ME, ada.headers)
    assert response.status_code == 200
    assert reads == 1
    assert (await probe.get(ME, ada.headers))[1] == 0


async def test_the_cached_user_is_detached_and_holds_only_what_auth_needs(
    app: FastAPI, probe: Probe, ada: SignedIn
) -> None:
    await probe.warm(ada.headers)
    cache: UserCache = state_of(app)["user_cache"]
    cached, _ = await cache.get(ada.user.id)
    assert cached is not None
    user = cached.user
    assert (user.id, user.email, user.is_active) == (ada.user.id, EMAIL, True)
    with pytest.raises(DetachedInstanceError):
        _ = user.password_hash


async def test_an_unreadable_entry_is_a_miss_and_is_replaced(
    app: FastAPI, probe: Probe, ada: SignedIn, backend: CacheBackend
) -> None:
    cache: UserCache = state_of(app)["user_cache"]
    _, lookup = await cache.get(ada.user.id)
    await cache._store.fill(lookup, b'{"written by": "another version"}')
    response, reads = await probe.get(ME, ada.headers)
    assert response.status_code == 200
    assert reads == 1
    assert (await probe.get(ME, ada.headers))[1] == 0
    assert set(orjson.loads(await backend.payload(ada.user.id) or b"{}")) == CACHED_FIELDS


async def test_profile_change_is_seen_at_once(
    probe: Probe, session: AsyncSession, ada: SignedIn
) -> None:
    await probe.warm(ada.headers)
    patched = await probe.client.patch(ME, json={"full_name": "Ada King"}, headers=ada.headers)
    assert patched.status_code == 200
    response, reads = await probe.get(ME, ada.headers)
    assert reads == 1
    assert response.json()["full_name"] == "Ada King"
    assert parsed(response.json()) == as_stored(await stored_user(session, EMAIL))


async def test_logout_all_refuses_the_cached_users_token_at_once(
    probe: Probe, ada: SignedIn
) -> None:
    await probe.warm(ada.headers)
    assert (await probe.client.post(f"{API}/auth/logout-all", headers=ada.headers)).status_code == (
        204
    )
    response, _ = await probe.get(ME, ada.headers)
    assert_problem(response, 401, "not_authenticated")
    assert_problem((await probe.get(TASKS, ada.headers))[0], 401, "not_authenticated")


async def test_a_revoked_sessions_token_is_refused_from_the_cache_without_a_read(
    probe: Probe,
) -> None:
    """The revocation invalidates the entry; one miss reads the user and the revoked
    families back, and from then on the cache alone refuses the revoked `sid` while the
    user's other session is still served."""
    registered = await register(probe.client, email=EMAIL)
    other = await login(probe.client, email=EMAIL)
    revoked, kept = bearer(registered["access_token"]), bearer(other.json()["access_token"])
    await probe.warm(revoked)
    logout = await probe.client.post(
        f"{API}/auth/logout", json={"refresh_token": registered["refresh_token"]}, headers=revoked
    )
    assert logout.status_code == 204

    response, reads = await probe.get(ME, revoked)
    assert_problem(response, 401, "not_authenticated")
    assert reads == 1
    for path in (ME, TASKS):
        response, reads = await probe.get(path, revoked)
        assert response.status_code == 401
        assert reads == 0
    response, reads = await probe.get(ME, kept)
    assert response.status_code == 200
    assert reads == 0


async def test_deleted_account_token_is_refused_at_once(
    probe: Probe, session: AsyncSession, ada: SignedIn
) -> None:
    await probe.warm(ada.headers)
    assert (await probe.client.delete(ME, headers=ada.headers)).status_code == 204
    assert_problem((await probe.get(ME, ada.headers))[0], 401, "not_authenticated")
    assert await stored_user(session, EMAIL) is None


async def test_verification_unlocks_task_routes_at_once(
    probe: Probe, session: AsyncSession, mailbox: Mailbox
) -> None:
    registered = await register(probe.client, email=EMAIL)
    headers = bearer(registered["access_token"])
    assert (await probe.warm(headers))["is_active"] is False
    assert_problem((await probe.get(TASKS, headers))[0], 403, "email_not_verified")

    token = await mailbox.token(EMAIL, "verify-email")
    verified = await probe.client.post(f"{API}/auth/verify-email", json={"token": token})
    assert verified.status_code == 200

    tasks, _ = await probe.get(TASKS, headers)
    assert tasks.status_code == 200
    me, _ = await probe.get(ME, headers)
    assert me.json()["is_active"] is True
    assert parsed(me.json()) == as_stored(await stored_user(session, EMAIL))


async def test_password_change_refuses_earlier_tokens_at_once(probe: Probe) -> None:
    registered = await register(probe.client, email=EMAIL)
    headers = bearer(registered["access_token"])
    await probe.warm(headers)
    changed = await probe.client.post(
        f"{ME}/password",
        json={"current_password": STRONG_PASSWORD, "new_password": OTHER_PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 204
    assert_problem((await probe.get(ME, headers))[0], 401, "not_authenticated")

    refreshed = await probe.client.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert refreshed.status_code == 200
    response, _ = await probe.get(ME, bearer(refreshed.json()["access_token"]))
    assert response.status_code == 200


async def test_password_reset_refuses_earlier_tokens_at_once(
    probe: Probe, ada: SignedIn, mailbox: Mailbox
) -> None:
    await probe.warm(ada.headers)
    await probe.client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    token = await mailbox.token(EMAIL, "reset-password")
    reset = await probe.client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": OTHER_PASSWORD}
    )
    assert reset.status_code == 204
    assert_problem((await probe.get(ME, ada.headers))[0], 401, "not_authenticated")


Change = Callable[[httpx.AsyncClient, AsyncSession], Awaitable[None]]


async def _failed_login(client: httpx.AsyncClient, _: AsyncSession) -> None:
    assert (await login(client, email=EMAIL, password="Wr0ng!Passw0rd")).status_code == 401


async def _locking_login(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await change_user(session, EMAIL, failed_login_attempts=4)
    assert (await login(client, email=EMAIL, password="Wr0ng!Passw0rd")).status_code == 403


async def _login_clearing_failures(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await change_user(
        session,
        EMAIL,
        failed_login_attempts=5,
        locked_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert (await login(client, email=EMAIL, password=DEFAULT_PASSWORD)).status_code == 200


async def _forgot_password(client: httpx.AsyncClient, _: AsyncSession) -> None:
    response = await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    assert response.status_code == 202


async def _resend_verification(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await change_user(session, EMAIL, is_active=False)
    response = await client.post(f"{API}/auth/resend-verification", json={"email": EMAIL})
    assert response.status_code == 202


@pytest.mark.parametrize(
    "change",
    [
        _failed_login,
        _locking_login,
        _login_clearing_failures,
        _forgot_password,
        _resend_verification,
    ],
)
async def test_every_other_write_to_the_user_row_is_seen_at_once(
    probe: Probe, session: AsyncSession, ada: SignedIn, change: Change
) -> None:
    """Lockout counting, its reset and the link tokens change no field of the answer but
    `updated_at` (and `is_active` where the test arranges it): still a change, still seen."""
    before = await probe.warm(ada.headers)
    await change(probe.client, session)
    response, reads = await probe.get(ME, ada.headers)
    assert response.status_code == 200
    assert reads == 1
    assert response.json()["updated_at"] != before["updated_at"]
    assert parsed(response.json()) == as_stored(await stored_user(session, EMAIL))


async def test_a_reader_that_read_the_old_row_cannot_cache_it_after_the_change(
    app: FastAPI, probe: Probe, ada: SignedIn
) -> None:
    """Miss, read the old row, then a change commits and invalidates, then the slow
    reader's fill arrives: it must not bring the old row back for 15 minutes."""
    cache: UserCache = state_of(app)["user_cache"]
    cached, lookup = await cache.get(ada.user.id)
    assert cached is None
    async with state_of(app)["sessionmaker"]() as reader:
        old_row = (
            await reader.execute(select(*CACHED_USER_COLUMNS).where(User.id == ada.user.id))
        ).one()
        await reader.commit()
    async with state_of(app)["sessionmaker"]() as writer:
        await service.update_profile(
            session=writer, cache=cache, user_id=ada.user.id, full_name="Ada King"
        )
        await writer.commit()
    await cache.fill(lookup, old_row._mapping, [])

    response, reads = await probe.get(ME, ada.headers)
    assert reads == 1
    assert response.json()["full_name"] == "Ada King"


async def test_invalidation_waits_for_the_commit_and_skips_a_rollback(
    app: FastAPI, probe: Probe, ada: SignedIn
) -> None:
    cache: UserCache = state_of(app)["user_cache"]
    await probe.warm(ada.headers)
    async with state_of(app)["sessionmaker"]() as writer:
        await service.update_profile(
            session=writer, cache=cache, user_id=ada.user.id, full_name="Never Committed"
        )
        await writer.rollback()
    response, reads = await probe.get(ME, ada.headers)
    assert (response.json()["full_name"], reads) == ("Ada Lovelace", 0)

    async with state_of(app)["sessionmaker"]() as writer:
        await service.update_profile(
            session=writer, cache=cache, user_id=ada.user.id, full_name="Ada King"
        )
        # Flushed, not committed: others still see the committed row, so may the cache.
        response, reads = await probe.get(ME, ada.headers)
        assert (response.json()["full_name"], reads) == ("Ada Lovelace", 0)
        await writer.commit()
    response, reads = await probe.get(ME, ada.headers)
    assert (response.json()["full_name"], reads) == ("Ada King", 1)


async def test_password_change_service_invalidates_after_its_commit(
    app: FastAPI, probe: Probe, ada: SignedIn
) -> None:
    """The service call alone, committed by its caller: the hook is the session's."""
    await probe.warm(ada.headers)
    hasher: PasswordHasher = state_of(app)["password_hasher"]
    async with state_of(app)["sessionmaker"]() as writer:
        await service.change_password(
            session=writer,
            cache=state_of(app)["user_cache"],
            settings=state_of(app)["settings"],
            hasher=hasher,
            user_id=ada.user.id,
            family_id=ada.user.id,
            current_password=DEFAULT_PASSWORD,
            new_password=OTHER_PASSWORD,
        )
        await writer.commit()
    assert_problem((await probe.get(ME, ada.headers))[0], 401, "not_authenticated")
