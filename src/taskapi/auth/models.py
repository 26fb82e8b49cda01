"""The account tables: users, and refresh tokens grouped in families (one per login)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.core.models import Base, Timestamps, UUIDPrimaryKey, utcnow

SHA256_HEX_LENGTH = 64


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=False, server_default=false())
    failed_login_attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None]
    email_verification_token_hash: Mapped[str | None] = mapped_column(
        String(SHA256_HEX_LENGTH), unique=True
    )
    email_verification_expires_at: Mapped[datetime | None]
    password_reset_token_hash: Mapped[str | None] = mapped_column(
        String(SHA256_HEX_LENGTH), unique=True
    )
    password_reset_expires_at: Mapped[datetime | None]
    tokens_valid_after: Mapped[datetime | None]
    """Access tokens issued before this instant are rejected (logout-all, password change)."""


USER_AGENT_MAX_LENGTH = 512
CLIENT_IP_MAX_LENGTH = 64


class RefreshTokenFamily(UUIDPrimaryKey, Base):
    """One login (or registration) and every refresh token rotated from it: what the API
    shows as a session. Its id is the `sid` claim of every access token issued in it, so
    revoking the family ends those access tokens too (auth/cache.py carries the revoked
    ids of each user to every instance)."""

    __tablename__ = "refresh_token_families"
    __table_args__ = (
        Index("ix_refresh_token_families_user_id_revoked_at", "user_id", "revoked_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(CLIENT_IP_MAX_LENGTH))
    """The client's address as the trusted-proxy rule resolved it at sign-in."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime]
    """Sign-in or the latest refresh."""
    expires_at: Mapped[datetime]
    """When its newest refresh token expires: the family cannot be refreshed after that."""
    revoked_at: Mapped[datetime | None]


class RefreshToken(UUIDPrimaryKey, Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("refresh_token_families.id", ondelete="CASCADE")
    )
    """Every token rotated from one login shares a family; reuse of a rotated one kills it."""
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


PERSONAL_TOKEN_NAME_MAX_LENGTH = 100


class Scope(StrEnum):
    """What a personal access token may do (a password sign-in may do everything)."""

    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    CATEGORIES_READ = "categories:read"
    CATEGORIES_WRITE = "categories:write"
    WEBHOOKS_MANAGE = "webhooks:manage"


class PersonalAccessToken(UUIDPrimaryKey, Base):
    """A token for scripts and integrations: only its SHA-256 is kept, and it can do only
    what its scopes allow. It lives until it expires or is deleted; logout-all and a
    password change leave it alone, a password reset and account deletion end it."""

    __tablename__ = "personal_access_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(PERSONAL_TOKEN_NAME_MAX_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    """None: never."""
    last_used_at: Mapped[datetime | None]
    """Written at most once a minute."""


IDEMPOTENCY_KEY_MAX_LENGTH = 255


class IdempotencyRecord(UUIDPrimaryKey, Base):
    """The first answer to a POST sent with an `Idempotency-Key`, kept for 24 hours so a
    repeat by the same caller gets it again instead of doing the work twice."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("caller_id", "key"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    caller_id: Mapped[uuid.UUID]
    """The user for a password sign-in, the token for a personal access token."""
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    """SHA-256 of the method, path, query and body of the first request."""
    status_code: Mapped[int]
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
