"""The categories table: (user_id, name) is unique."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.core.models import Base, Timestamps, UUIDPrimaryKey

DEFAULT_COLOR = "#6366F1"


class Category(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))
    color: Mapped[str] = mapped_column(
        String(7), default=DEFAULT_COLOR, server_default=DEFAULT_COLOR
    )
