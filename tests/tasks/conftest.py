"""Users and tasks made straight in the database for the task tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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


@pytest.fixture
def add_task(session: AsyncSession) -> AddTask:
    """Inserts a task for a user, bypassing the API's rules (past due dates, set timestamps)."""

    async def add(user: User, title: str = "A task", **fields: Any) -> Task:
        task = Task(user_id=user.id, title=title, **fields)
        session.add(task)
        await session.commit()
        return task

    return add


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
