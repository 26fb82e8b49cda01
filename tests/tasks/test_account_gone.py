"""A write for an account deleted after the request authenticated is a 401, never the
500 of a foreign-key violation.

The user cache is what lets a request authenticate a user whose row is already gone: here
the row is deleted behind the cache's back, as a deletion committed on another instance
looks until its invalidation arrives. tests/races/test_account_races.py races the real
thing on PostgreSQL.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.categories.models import Category
from taskapi.tasks.models import Task
from tests.support.factories import SignedIn
from tests.support.problems import assert_problem


@pytest.mark.parametrize(
    ("path", "body", "model"),
    [
        ("/api/v1/tasks", {"title": "Orphan"}, Task),
        ("/api/v1/categories", {"name": "Orphan"}, Category),
    ],
)
async def test_creating_for_a_deleted_account_is_401(
    client: httpx.AsyncClient,
    session: AsyncSession,
    alice: SignedIn,
    path: str,
    body: dict[str, str],
    model: type[Task] | type[Category],
) -> None:
    cached = await client.get("/api/v1/users/me", headers=alice.headers)
    assert cached.status_code == 200
    await session.execute(delete(User).where(User.id == alice.user.id))
    await session.commit()

    response = await client.post(path, json=body, headers=alice.headers)

    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    stored = await session.scalar(select(func.count()).select_from(model))
    assert stored == 0
