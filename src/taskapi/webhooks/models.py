"""The webhooks table and the log of their deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taskapi.core.models import Base, Timestamps, UUIDPrimaryKey, utcnow

MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 500


class Webhook(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "webhooks"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(MAX_DESCRIPTION_LENGTH))
    enabled: Mapped[bool] = mapped_column(default=True)
    secret: Mapped[str] = mapped_column(String(100))
    """`whsec_…`: deliveries are signed with it, so it is kept as it is (never shown again)."""
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    """The secret before the last rotation, still signing until `previous_secret_expires_at`."""
    previous_secret_expires_at: Mapped[datetime | None]


class WebhookDelivery(UUIDPrimaryKey, Base):
    """One event for one webhook: its body as sent (every attempt sends the same bytes under
    the same `webhook-id`, its id) and how the attempts went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    status_code: Mapped[int | None]
    """The last attempt's HTTP status; None when it got no answer."""
    duration_ms: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    """When the next attempt is due; None once delivered or given up."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    webhook: Mapped[Webhook] = relationship(lazy="raise")
