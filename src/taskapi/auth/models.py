"""The account tables: users, and refresh tokens grouped in families (one per login)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, false, text
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


class RefreshToken(UUIDPrimaryKey, Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID]
    """Every token rotated from one login shares a family; reuse of a rotated one kills it."""
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
