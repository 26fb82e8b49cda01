"""Rows made straight in the database, so a feature's tests need not go through another's API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.security import argon2id, create_access_token

DEFAULT_PASSWORD = "Str0ng!Passw0rd"

_hasher = argon2id()


@cache
def default_password_hash() -> str:
    """One real argon2id hash of DEFAULT_PASSWORD, computed once per test run."""
    return _hasher.hash(DEFAULT_PASSWORD)


@dataclass(frozen=True)
class SignedIn:
    user: User
    headers: dict[str, str]


async def create_user(
    session: AsyncSession,
    *,
    email: str | None = None,
    full_name: str = "Ada Lovelace",
    is_active: bool = True,
) -> User:
    user = User(
        email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
        password_hash=default_password_hash(),
        full_name=full_name,
        is_active=is_active,
        created_at=datetime.now(UTC),
    )
    session.add(user)
    await session.commit()
    return user


def bearer_headers(
    settings: Settings, user: User, *, family_id: uuid.UUID | None = None
) -> dict[str, str]:
    """An access token as a login would issue; `family_id` names its refresh-token family."""
    token = create_access_token(
        settings=settings,
        user_id=user.id,
        email=user.email,
        family_id=family_id or uuid.uuid4(),
    )
    return {"Authorization": f"Bearer {token}"}


async def sign_in(
    session: AsyncSession, settings: Settings, *, is_active: bool = True, email: str | None = None
) -> SignedIn:
    user = await create_user(session, is_active=is_active, email=email)
    return SignedIn(user=user, headers=bearer_headers(settings, user))
