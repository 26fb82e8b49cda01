from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.categories.models import Category
from taskapi.core.config import Settings
from tests.factories import SignedIn, sign_in

CATEGORIES = "/api/v1/categories"


@pytest.fixture
async def alice(session: AsyncSession, settings: Settings) -> SignedIn:
    return await sign_in(session, settings)


@pytest.fixture
async def bob(session: AsyncSession, settings: Settings) -> SignedIn:
    return await sign_in(session, settings)


async def create_category(
    client: httpx.AsyncClient, who: SignedIn, name: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(CATEGORIES, json={"name": name, **fields}, headers=who.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored_categories(session: AsyncSession, who: SignedIn) -> list[Category]:
    """What the database holds for one user, read fresh (not from the identity map).

    Every read ends its transaction: on SQLite an open one would hold the write lock that
    the app's requests wait for.
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


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


def field_errors(body: dict[str, Any]) -> set[str]:
    return {error["field"] for error in body["errors"]}
