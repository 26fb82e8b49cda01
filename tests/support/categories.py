"""Category helpers: API shortcuts and fresh reads of what the database stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.categories.models import Category
from taskapi.tasks.models import Task, task_categories
from tests.support.factories import SignedIn

CATEGORIES = "/api/v1/categories"


async def create_category(
    client: httpx.AsyncClient, who: SignedIn, name: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(CATEGORIES, json={"name": name, **fields}, headers=who.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored_categories(session: AsyncSession, who: SignedIn) -> list[Category]:
    """What the database holds for one user, read fresh (not from the identity map).

    Every read ends its transaction, so the test holds no connection in an open
    transaction while the app runs.
    """
    session.expunge_all()
    result = await session.scalars(
        select(Category).where(Category.user_id == who.user.id).order_by(Category.name)
    )
    categories = list(result.all())
    await session.commit()
    return categories


async def stored_category(session: AsyncSession, category_id: str | uuid.UUID) -> Category | None:
    session.expunge_all()
    category = await session.get(Category, uuid.UUID(str(category_id)))
    await session.commit()
    return category


TASKS = "/api/v1/tasks"


async def create_task(client: httpx.AsyncClient, who: SignedIn, title: str) -> dict[str, Any]:
    response = await client.post(TASKS, json={"title": title}, headers=who.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def link_path(task: dict[str, Any] | str, category: dict[str, Any] | str) -> str:
    task_id = task if isinstance(task, str) else task["id"]
    category_id = category if isinstance(category, str) else category["id"]
    return f"{TASKS}/{task_id}/categories/{category_id}"


async def stored_links(session: AsyncSession) -> set[tuple[str, str]]:
    """Every (task_id, category_id) row of task_categories."""
    rows = (await session.execute(select(task_categories))).all()
    await session.commit()
    return {(str(task_id), str(category_id)) for task_id, category_id in rows}


async def stored_task(session: AsyncSession, task_id: str) -> Task:
    session.expunge_all()
    task = await session.get(Task, uuid.UUID(task_id))
    await session.commit()
    assert task is not None
    return task
