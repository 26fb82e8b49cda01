"""Every table, imported in one place so the metadata is complete for Alembic and tests."""

from typing import Any

from sqlalchemy import Column, Index

from taskapi.auth.models import (
    IdempotencyRecord,
    PersonalAccessToken,
    RefreshToken,
    RefreshTokenFamily,
    User,
)
from taskapi.categories.models import Category
from taskapi.core.jobs import Job
from taskapi.core.models import Base
from taskapi.tasks.models import Task, task_categories
from taskapi.webhooks.models import Webhook, WebhookDelivery

__all__ = [
    "Base",
    "Category",
    "IdempotencyRecord",
    "Job",
    "PersonalAccessToken",
    "RefreshToken",
    "RefreshTokenFamily",
    "Task",
    "User",
    "Webhook",
    "WebhookDelivery",
    "compared_by_autogenerate",
    "task_categories",
]


def compared_by_autogenerate(
    item: Any, _name: str | None, type_: str, _reflected: bool, _compare_to: Any
) -> bool:
    """Alembic's `include_object`: every object but an index on an expression.

    Reflection loses part of those: SQLite skips them, PostgreSQL drops the collation
    (`lower(title) COLLATE "C"` comes back as `lower(title)`), so autogenerate would drop and
    re-create them on every run. tests/core/test_migrations.py checks their definitions in
    the database instead.
    """
    return not (
        type_ == "index"
        and isinstance(item, Index)
        and not all(isinstance(expression, Column) for expression in item.expressions)
    )
