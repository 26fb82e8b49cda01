"""Service rules called directly: writes go to the stored row, never to a stale copy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from taskapi.auth import families, service
from taskapi.auth.cache import UserCache
from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.jobs import Job
from taskapi.core.security import PasswordHasher
from tests.support.apps import state_of
from tests.support.auth import OTHER_PASSWORD, STRONG_PASSWORD, stored_refresh_tokens, stored_user
from tests.support.factories import DEFAULT_PASSWORD, create_user
from tests.support.jobs import run_jobs

EMAIL = "ada@example.com"
CLIENT = families.Client(user_agent="pytest", ip="127.0.0.1")
CHANGED_ELSEWHERE = "Ch4nged!Elsewhere"


@pytest.fixture
async def other_session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """A second connection, standing for another request or instance."""
    async with state_of(app)["sessionmaker"]() as db_session:
        yield db_session


async def queued_jobs(session: AsyncSession) -> list[Job]:
    """What the other connections committed; ends the read at once (SQLite's write lock)."""
    jobs = list(await session.scalars(select(Job).execution_options(populate_existing=True)))
    await session.commit()
    return jobs


@pytest.fixture
def hasher(app: FastAPI) -> PasswordHasher:
    pool: PasswordHasher = state_of(app)["password_hasher"]
    return pool


@pytest.fixture
def cache(app: FastAPI) -> UserCache:
    user_cache: UserCache = state_of(app)["user_cache"]
    return user_cache


async def test_login_counts_failures_in_the_database_not_on_a_stale_row(
    session: AsyncSession,
    other_session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    cache: UserCache,
) -> None:
    stale = await create_user(session, email=EMAIL)
    assert stale.failed_login_attempts == 0
    await other_session.execute(
        update(User).where(User.id == stale.id).values(failed_login_attempts=4)
    )
    await other_session.commit()

    with pytest.raises(service.AccountLocked) as locked:
        await service.login(
            session=session,
            cache=cache,
            settings=settings,
            hasher=hasher,
            client=CLIENT,
            email=EMAIL,
            password="Wr0ng!Passw0rd",
        )
    assert locked.value.keep_changes is True
    assert "locked_until" in locked.value.extra
    await session.commit()
    stored = await stored_user(other_session, EMAIL)
    assert stored is not None
    assert stored.failed_login_attempts == 5
    assert stored.locked_until is not None


async def test_wrong_password_error_keeps_the_count(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    cache: UserCache,
) -> None:
    await create_user(session, email=EMAIL)
    with pytest.raises(service.InvalidCredentials) as refused:
        await service.login(
            session=session,
            cache=cache,
            settings=settings,
            hasher=hasher,
            client=CLIENT,
            email=EMAIL,
            password="nope",
        )
    assert refused.value.keep_changes is True
    assert refused.value.status == 401


async def test_update_profile_writes_the_stored_row(
    session: AsyncSession,
    other_session: AsyncSession,
    cache: UserCache,
) -> None:
    stale = await create_user(session, email=EMAIL, full_name="Ada")
    await other_session.execute(update(User).where(User.id == stale.id).values(is_active=False))
    await other_session.commit()

    updated = await service.update_profile(
        session=session, cache=cache, user_id=stale.id, full_name="Ada King"
    )
    await session.commit()
    assert updated.full_name == "Ada King"
    assert updated.is_active is False  # re-read, so the other write is not overwritten
    stored = await stored_user(other_session, EMAIL)
    assert stored is not None
    assert (stored.full_name, stored.is_active) == ("Ada King", False)


async def test_change_password_checks_the_stored_hash(
    session: AsyncSession,
    other_session: AsyncSession,
    hasher: PasswordHasher,
    cache: UserCache,
    settings: Settings,
) -> None:
    stale = await create_user(session, email=EMAIL)
    await other_session.execute(
        update(User)
        .where(User.id == stale.id)
        .values(password_hash=await hasher.hash(CHANGED_ELSEWHERE))
    )
    await other_session.commit()
    user_id = stale.id
    family_id = uuid.uuid4()  # any family: this user has no refresh tokens

    with pytest.raises(service.IncorrectPassword):
        await service.change_password(
            session=session,
            cache=cache,
            settings=settings,
            hasher=hasher,
            user_id=user_id,
            family_id=family_id,
            current_password=DEFAULT_PASSWORD,
            new_password=OTHER_PASSWORD,
        )
    await session.rollback()
    await service.change_password(
        session=session,
        cache=cache,
        settings=settings,
        hasher=hasher,
        user_id=user_id,
        family_id=family_id,
        current_password=CHANGED_ELSEWHERE,
        new_password=OTHER_PASSWORD,
    )
    await session.commit()
    stored = await stored_user(other_session, EMAIL)
    assert stored is not None
    assert await hasher.verify(OTHER_PASSWORD, stored.password_hash)
    assert stored.tokens_valid_after is not None


@pytest.fixture
async def reader(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """Another connection that only reads, so it never waits for SQLite's write lock."""
    async with state_of(app)["read_sessionmaker"]() as db_session:
        yield db_session


async def test_register_queues_the_email_in_its_own_transaction(
    app: FastAPI,
    session: AsyncSession,
    reader: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
) -> None:
    """Nothing is sent before the commit; a rolled-back registration leaves no job."""
    with capture_logs() as logs:
        await service.register(
            session=session,
            settings=settings,
            hasher=hasher,
            client=CLIENT,
            email="rolled@example.com",
            password=STRONG_PASSWORD,
            full_name="Ada",
        )
        await session.rollback()
        tokens = await service.register(
            session=session,
            settings=settings,
            hasher=hasher,
            client=CLIENT,
            email=EMAIL,
            password=STRONG_PASSWORD,
            full_name="Ada",
        )
        assert await queued_jobs(reader) == []
        await session.commit()
        [job] = await queued_jobs(reader)
        assert job.kind == "auth.verification_email"
        assert job.payload["user_id"] == str(tokens.user.id)
        assert set(job.payload) == {"user_id", "nonce"}
        assert [entry for entry in logs if entry["event"] == "email"] == []
        assert await run_jobs(app) == 1
    [sent] = [entry for entry in logs if entry["event"] == "email"]
    assert sent["to"] == EMAIL
    assert sent["link"].startswith("http://frontend.test/verify-email?token=")
    token = sent["link"].rpartition("=")[2]
    assert token not in str(job.payload)
    assert await queued_jobs(reader) == []


async def test_logout_all_leaves_other_accounts_alone(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    cache: UserCache,
) -> None:
    mine = await create_user(session, email=EMAIL)
    theirs = await create_user(session, email="eve@example.com")
    for email in (EMAIL, "eve@example.com"):
        await service.login(
            session=session,
            cache=cache,
            settings=settings,
            hasher=hasher,
            client=CLIENT,
            email=email,
            password=DEFAULT_PASSWORD,
        )
    await session.commit()

    await service.logout_all(session=session, cache=cache, user_id=mine.id)
    await session.commit()

    assert all(row.revoked_at for row in await stored_refresh_tokens(session, mine.id))
    assert not any(row.revoked_at for row in await stored_refresh_tokens(session, theirs.id))
    other = await stored_user(session, "eve@example.com")
    assert other is not None
    assert other.tokens_valid_after is None
