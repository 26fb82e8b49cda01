"""Categories: a user's own labels for tasks, unique by name per user.

Assigning a category to a task is a change to the task: tasks/service.py does it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.categories.models import Category
from taskapi.categories.schemas import CategoryCreate, CategoryRead, CategoryUpdate
from taskapi.core.db import is_foreign_key_violation
from taskapi.core.errors import AccountGone, Conflict, NotFound
from taskapi.core.events import Render, publish


class CategoryExists(Conflict):
    code = "category_exists"

    def __init__(self) -> None:
        super().__init__("You already have a category with this name.")


class CategoryNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Category not found.")


def _owned(user: User) -> Select[Category]:
    return select(Category).where(Category.user_id == user.id)


def sort_key(category: Category) -> tuple[str, str]:
    """Case-insensitive by Unicode case folding, then by exact name in code-point order.

    Sorted here rather than in SQL so the order is the same on every backend: SQLite's
    lower() folds only ASCII, and PostgreSQL's order depends on the database's collation.
    """
    return category.name.casefold(), category.name


async def get_category(*, session: AsyncSession, user: User, category_id: uuid.UUID) -> Category:
    category = await session.scalar(_owned(user).where(Category.id == category_id))
    if category is None:
        raise CategoryNotFound
    return category


async def list_categories(*, session: AsyncSession, user: User) -> list[Category]:
    categories = (await session.scalars(_owned(user))).all()
    return sorted(categories, key=sort_key)


async def create_category(*, session: AsyncSession, user: User, data: CategoryCreate) -> Category:
    category = Category(user_id=user.id, name=data.name, color=data.color)
    async with _unique_name(session):
        session.add(category)
        await session.flush()
    await publish(session, user_id=user.id, type="category.created", render=_as_read(category))
    return category


def _as_read(category: Category) -> Render:
    async def render() -> dict[str, Any]:
        return CategoryRead.model_validate(category).model_dump(mode="json")

    return render


async def update_category(
    *, session: AsyncSession, user: User, category_id: uuid.UUID, data: CategoryUpdate
) -> Category:
    category = await get_category(session=session, user=user, category_id=category_id)
    changes = data.model_dump(exclude_unset=True)
    if any(getattr(category, field) != value for field, value in changes.items()):
        async with _unique_name(session):
            for field, value in changes.items():
                setattr(category, field, value)
            await session.flush()
        await publish(session, user_id=user.id, type="category.updated", render=_as_read(category))
    return category


async def delete_category(*, session: AsyncSession, user: User, category_id: uuid.UUID) -> None:
    """The task links go with it through the foreign key's ON DELETE CASCADE.

    The tasks' versions stay: a version counts changes made to the task (its fields, and
    categories assigned or removed through it), just as renaming a category leaves it alone.
    """
    category = await get_category(session=session, user=user, category_id=category_id)
    await session.delete(category)
    await session.flush()

    async def render() -> dict[str, Any]:
        return {"id": str(category_id)}

    await publish(session, user_id=user.id, type="category.deleted", render=render)


@asynccontextmanager
async def _unique_name(session: AsyncSession) -> AsyncIterator[None]:
    """Write and let the unique constraint (user_id, name) decide: a look-up first would race.

    The changes must be made inside: the savepoint keeps the request's transaction usable
    after the violation (PostgreSQL aborts a transaction on any error inside it), and
    starting one flushes whatever is pending outside it. The only other constraint a
    category write can break is its owner's foreign key: the account was deleted meanwhile.
    """
    try:
        async with session.begin_nested():
            yield
    except IntegrityError as error:
        if is_foreign_key_violation(error):
            raise AccountGone() from error
        raise CategoryExists() from error
