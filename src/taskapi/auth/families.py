"""Refresh-token families as the sessions a user lists and ends (`GET/DELETE /auth/sessions`).

A family is one login. Revoking it revokes its refresh tokens and marks the family row, and
the mark is what ends its access tokens (their `sid` claim): the user cache carries every
recently revoked family of a user, and is invalidated after the revoking commit, so every
instance refuses them from its next request without reading the database on each one.

Lock order, so that a refresh racing a revocation neither deadlocks nor survives it: a
refresh rotates its token, then updates its family row only while the family is not
revoked; a revocation revokes the tokens, then the family row. Whichever of the two family
updates comes second sees the first one's outcome, so a token that a refresh issues after a
revocation's token update belongs to a revoked family and cannot be used.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.cache import UserCache
from taskapi.auth.models import (
    CLIENT_IP_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    RefreshToken,
    RefreshTokenFamily,
)
from taskapi.core.errors import NotFound
from taskapi.core.models import utcnow

REVOCATION_CLOCK_SKEW = timedelta(minutes=1)
"""Instances' clocks may differ a little: a revoked family is remembered this much longer."""


class SessionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Session not found.")


@dataclass(frozen=True, slots=True)
class Client:
    """Who signed in, as far as the request tells: shown in the list of sessions."""

    user_agent: str | None
    ip: str | None

    def truncated(self) -> Client:
        return Client(
            user_agent=None if self.user_agent is None else self.user_agent[:USER_AGENT_MAX_LENGTH],
            ip=None if self.ip is None else self.ip[:CLIENT_IP_MAX_LENGTH],
        )


async def start(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    client: Client,
    now: datetime,
    expires_at: datetime,
) -> uuid.UUID:
    client = client.truncated()
    family = RefreshTokenFamily(
        user_id=user_id,
        user_agent=client.user_agent,
        ip=client.ip,
        created_at=now,
        last_used_at=now,
        expires_at=expires_at,
    )
    session.add(family)
    # Before its first token refers to it.
    await session.flush()
    return family.id


async def extend(
    *, session: AsyncSession, family_id: uuid.UUID, now: datetime, expires_at: datetime
) -> bool:
    """Record a refresh; False when the family was revoked meanwhile (the refresh must fail)."""
    extended = await session.scalar(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.id == family_id, RefreshTokenFamily.revoked_at.is_(None))
        .values(last_used_at=now, expires_at=expires_at)
        .returning(RefreshTokenFamily.id)
        .execution_options(synchronize_session=False)
    )
    return extended is not None


async def list_live(*, session: AsyncSession, user_id: uuid.UUID) -> Sequence[RefreshTokenFamily]:
    """Families that can still be refreshed, newest first."""
    return (
        await session.scalars(
            select(RefreshTokenFamily)
            .where(
                RefreshTokenFamily.user_id == user_id,
                RefreshTokenFamily.revoked_at.is_(None),
                RefreshTokenFamily.expires_at > utcnow(),
            )
            .order_by(RefreshTokenFamily.created_at.desc(), RefreshTokenFamily.id.desc())
        )
    ).all()


async def end_session(
    *, session: AsyncSession, cache: UserCache, user_id: uuid.UUID, family_id: uuid.UUID
) -> None:
    """`DELETE /auth/sessions/{id}`: 404 unless it is a live family of the user's."""
    if not await revoke(session=session, cache=cache, user_id=user_id, family_id=family_id):
        raise SessionNotFound


async def revoke(
    *, session: AsyncSession, cache: UserCache, user_id: uuid.UUID, family_id: uuid.UUID
) -> bool:
    """End one live family of the user's; False when there is none by that id."""
    now = utcnow()
    await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.family_id == family_id,
            RefreshToken.user_id == user_id,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    revoked = await session.scalar(
        update(RefreshTokenFamily)
        .where(
            RefreshTokenFamily.id == family_id,
            RefreshTokenFamily.user_id == user_id,
            RefreshTokenFamily.revoked_at.is_(None),
            RefreshTokenFamily.expires_at > now,
        )
        .values(revoked_at=now)
        .returning(RefreshTokenFamily.id)
        .execution_options(synchronize_session=False)
    )
    if revoked is None:
        return False
    cache.invalidate_after_commit(session, user_id)
    return True


async def revoke_all(
    *,
    session: AsyncSession,
    cache: UserCache,
    user_id: uuid.UUID,
    now: datetime,
    keep: uuid.UUID | None = None,
) -> None:
    """End every family of the user's but `keep`: their refresh tokens, then the families;
    the cached user is forgotten after the commit, so their access tokens are refused."""
    tokens = update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    families = update(RefreshTokenFamily).where(
        RefreshTokenFamily.user_id == user_id, RefreshTokenFamily.revoked_at.is_(None)
    )
    if keep is not None:
        tokens = tokens.where(RefreshToken.family_id != keep)
        families = families.where(RefreshTokenFamily.id != keep)
    await session.execute(
        tokens.values(revoked_at=now).execution_options(synchronize_session=False)
    )
    await session.execute(
        families.values(revoked_at=now).execution_options(synchronize_session=False)
    )
    cache.invalidate_after_commit(session, user_id)


async def revoked_since(
    *, session: AsyncSession, user_id: uuid.UUID, access_token_lifetime: timedelta
) -> Sequence[uuid.UUID]:
    """The user's families revoked recently enough that an access token issued in one of
    them may not have expired yet: the ones authentication must refuse by `sid`."""
    since = utcnow() - access_token_lifetime - REVOCATION_CLOCK_SKEW
    return (
        await session.scalars(
            select(RefreshTokenFamily.id).where(
                RefreshTokenFamily.user_id == user_id, RefreshTokenFamily.revoked_at > since
            )
        )
    ).all()
