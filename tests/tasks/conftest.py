"""Task fixtures."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.tasks.models import Task
from tests.support.tasks import AddTask


@pytest.fixture
def add_task(session: AsyncSession) -> AddTask:
    """Inserts a task for a user, bypassing the API's rules (past due dates, set timestamps)."""

    async def add(user: User, title: str = "A task", **fields: Any) -> Task:
        task = Task(user_id=user.id, title=title, **fields)
        session.add(task)
        await session.commit()
        return task

    return add
