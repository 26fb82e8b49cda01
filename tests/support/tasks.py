"""Task helpers: categories and links made straight in the database, dates, fresh reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.categories.models import Category
from taskapi.tasks.models import Task, task_categories

TASKS = "/api/v1/tasks"

AddTask = Callable[..., Awaitable[Task]]


def in_days(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def iso(value: datetime) -> str:
    return value.isoformat()


async def add_category(session: AsyncSession, user: User, name: str) -> Category:
    category = Category(user_id=user.id, name=name)
    session.add(category)
    await session.commit()
    return category


async def link(session: AsyncSession, task: Task, *categories: Category) -> None:
    await session.execute(
        insert(task_categories),
        [{"task_id": task.id, "category_id": category.id} for category in categories],
    )
    await session.commit()


async def stored(session: AsyncSession, task_id: Any) -> Task | None:
    """The row as the database holds it now, not as this session remembers it."""
    task = await session.get(Task, task_id, populate_existing=True)
    await session.commit()
    return task
