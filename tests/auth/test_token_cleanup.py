"""The hourly clean-up job forgets expired link tokens, the refresh tokens of sessions that
have ended, expired sessions, personal access tokens and Idempotency-Key answers, and keeps
what reuse detection and `sid` revocation still need (a clock the test moves)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import (
    IdempotencyRecord,
    PersonalAccessToken,
    RefreshToken,
    RefreshTokenFamily,
    User,
)
from taskapi.core.models import utcnow
from taskapi.core.security import hash_token, new_opaque_token
from tests.support.apps import state_of
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


async def test_expired_sessions_personal_tokens_and_idempotency_keys_go(
    app: FastAPI, session: AsyncSession
) -> None:
    """What is past its time goes; a revoked session stays while an access token issued in
    it may be alive (its `sid` must stay refused), and so does everything still live."""
    ada = await create_user(session, email="ada@example.com")
    now = utcnow()
    lifetime = timedelta(minutes=state_of(app)["settings"].access_token_expire_minutes)

    def family(*, expires_in: timedelta, revoked_ago: timedelta | None) -> RefreshTokenFamily:
        return RefreshTokenFamily(
            user_id=ada.id,
            created_at=now - timedelta(days=8),
            last_used_at=now - timedelta(days=1),
            expires_at=now + expires_in,
            revoked_at=None if revoked_ago is None else now - revoked_ago,
        )

    families = {
        "expired": family(expires_in=timedelta(hours=-1), revoked_ago=None),
        "expired, revoked long ago": family(
            expires_in=timedelta(minutes=-1), revoked_ago=lifetime + timedelta(minutes=2)
        ),
        "expired, revoked just now": family(
            expires_in=timedelta(minutes=-1), revoked_ago=timedelta(minutes=2)
        ),
        "revoked, not expired": family(expires_in=timedelta(days=2), revoked_ago=timedelta(days=1)),
        "live": family(expires_in=timedelta(days=6), revoked_ago=None),
    }

    def personal_token(name: str, expires_in: timedelta | None) -> PersonalAccessToken:
        return PersonalAccessToken(
            user_id=ada.id,
            name=name,
            token_hash=hash_token(new_opaque_token()),
            scopes=["tasks:read"],
            expires_at=None if expires_in is None else now + expires_in,
        )

    tokens = [
        personal_token("expired", timedelta(seconds=-1)),
        personal_token("expires tomorrow", timedelta(days=1)),
        personal_token("never expires", None),
    ]

    def answer(key: str, expires_in: timedelta) -> IdempotencyRecord:
        return IdempotencyRecord(
            user_id=ada.id,
            caller_id=ada.id,
            key=key,
            fingerprint="0" * 64,
            status_code=201,
            headers={},
            body=b"{}",
            expires_at=now + expires_in,
        )

    answers = [answer("old", timedelta(seconds=-1)), answer("recent", timedelta(hours=23))]
    session.add_all([*families.values(), *tokens, *answers])
    await session.commit()
    family_ids = {name: row.id for name, row in families.items()}

    await run_periodic_jobs(app, clock=FakeClock())

    left = set(await session.scalars(select(RefreshTokenFamily.id)))
    assert left == {
        family_ids[name] for name in ("expired, revoked just now", "revoked, not expired", "live")
    }
    assert set(await session.scalars(select(PersonalAccessToken.name))) == {
        "expires tomorrow",
        "never expires",
    }
    assert set(await session.scalars(select(IdempotencyRecord.key))) == {"recent"}
    await session.commit()
