"""The hourly clean-up job forgets expired link tokens and the refresh tokens of sessions
that have ended, and keeps what reuse detection still needs (a clock the test moves)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import RefreshToken, RefreshTokenFamily, User
from taskapi.core.models import utcnow
from taskapi.core.security import hash_token, new_opaque_token
from tests.support.auth import stored_user
from tests.support.factories import create_user
from tests.support.jobs import FakeClock, run_periodic_jobs


async def add_token(
    session: AsyncSession,
    user: User,
    family: uuid.UUID,
    *,
    expires_in: timedelta,
    revoked: bool = False,
) -> uuid.UUID:
    now = utcnow()
    await _add_to_family(session, user, family, expires_at=now + expires_in, revoked=revoked)
    token = RefreshToken(
        user_id=user.id,
        family_id=family,
        token_hash=hash_token(new_opaque_token()),
        expires_at=now + expires_in,
        revoked_at=now if revoked else None,
        created_at=now,
    )
    session.add(token)
    await session.commit()
    return token.id


async def _add_to_family(
    session: AsyncSession,
    user: User,
    family_id: uuid.UUID,
    *,
    expires_at: datetime,
    revoked: bool,
) -> None:
    """The session row a token belongs to: it lasts as long as its newest token and is
    revoked while all its tokens are."""
    now = utcnow()
    family = await session.get(RefreshTokenFamily, family_id)
    if family is None:
        session.add(
            RefreshTokenFamily(
                id=family_id,
                user_id=user.id,
                created_at=now,
                last_used_at=now,
                expires_at=expires_at,
                revoked_at=now if revoked else None,
            )
        )
    else:
        family.expires_at = max(family.expires_at, expires_at)
        if not revoked:
            family.revoked_at = None
    await session.flush()


async def remaining_tokens(session: AsyncSession) -> set[uuid.UUID]:
    ids = set(await session.scalars(select(RefreshToken.id)))
    await session.commit()
    return ids


async def test_expired_tokens_go_and_live_sessions_keep_theirs(
    app: FastAPI, session: AsyncSession
) -> None:
    ada = await create_user(session, email="ada@example.com", is_active=False)
    eve = await create_user(session, email="eve@example.com", is_active=False)
    await session.execute(
        update(User)
        .where(User.id == ada.id)
        .values(
            email_verification_token_hash="a" * 64,
            email_verification_expires_at=utcnow() - timedelta(minutes=1),
            password_reset_token_hash="b" * 64,
            password_reset_expires_at=utcnow() - timedelta(minutes=1),
        )
    )
    await session.execute(
        update(User)
        .where(User.id == eve.id)
        .values(
            email_verification_token_hash="c" * 64,
            email_verification_expires_at=utcnow() + timedelta(hours=1),
            password_reset_token_hash="d" * 64,
            password_reset_expires_at=utcnow() + timedelta(minutes=30),
        )
    )
    await session.commit()

    ended, live, logged_out = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ended_tokens = {
        await add_token(session, ada, ended, expires_in=timedelta(days=-2), revoked=True),
        await add_token(session, ada, ended, expires_in=timedelta(days=-1)),
    }
    rotated = await add_token(session, ada, live, expires_in=timedelta(days=-1), revoked=True)
    current = await add_token(session, ada, live, expires_in=timedelta(days=6))
    revoked_unexpired = await add_token(
        session, eve, logged_out, expires_in=timedelta(days=3), revoked=True
    )

    await run_periodic_jobs(app, clock=FakeClock())

    assert ended_tokens.isdisjoint(await remaining_tokens(session))
    assert await remaining_tokens(session) == {rotated, current, revoked_unexpired}
    cleaned = await stored_user(session, "ada@example.com")
    assert cleaned is not None
    assert (cleaned.email_verification_token_hash, cleaned.email_verification_expires_at) == (
        None,
        None,
    )
    assert (cleaned.password_reset_token_hash, cleaned.password_reset_expires_at) == (None, None)
    untouched = await stored_user(session, "eve@example.com")
    assert untouched is not None
    assert untouched.email_verification_token_hash == "c" * 64
    assert untouched.password_reset_token_hash == "d" * 64

    # Three days on, the logged-out session's token has expired too: nothing of it is left.
    clock = FakeClock()
    clock.advance(days=4)
    await run_periodic_jobs(app, clock=clock)
    assert await remaining_tokens(session) == {rotated, current}
