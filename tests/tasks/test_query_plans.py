"""PostgreSQL query plans of the task list: the default list, each filter and each sort
reach one user's tasks through an index that starts with user_id, never by a sequential
scan of every user's tasks.

PostgreSQL only, on purpose: EXPLAIN output and its planner are PostgreSQL's own, and the
indexes exist for the production database. On SQLite this test is skipped, and only this one.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from taskapi.auth.models import User
from taskapi.categories.models import Category
from taskapi.core.models import new_id
from taskapi.core.pagination import PageParams
from taskapi.tasks.models import Task, TaskPriority, TaskStatus, task_categories
from taskapi.tasks.schemas import TaskListQuery
from taskapi.tasks.service import list_statements

pytestmark = pytest.mark.needs_services("postgresql", reason="EXPLAIN plans are PostgreSQL's")

USERS = 20
TASKS_PER_USER = 250
CATEGORIES_PER_USER = 5
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


async def _seed(session: AsyncSession) -> tuple[User, Category]:
    """Several users share the table, so one user's tasks are a small part of it; some of
    the tasks are deleted, undated or in categories, as in real use."""
    rng = random.Random(4)
    users = [
        User(email=f"planner-{n}@example.com", password_hash="x", full_name="P", is_active=True)
        for n in range(USERS)
    ]
    session.add_all(users)
    await session.flush()
    categories = {
        user.id: [Category(user_id=user.id, name=f"c{n}") for n in range(CATEGORIES_PER_USER)]
        for user in users
    }
    session.add_all([category for group in categories.values() for category in group])
    await session.flush()
    tasks: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for user in users:
        for number in range(TASKS_PER_USER):
            task_id = new_id()
            tasks.append(
                {
                    "id": task_id,
                    "user_id": user.id,
                    "title": f"task {number} {rng.random():.6f}",
                    "description": "notes" if number % 3 else None,
                    "status": rng.choice(list(TaskStatus)),
                    "priority": rng.choice(list(TaskPriority)),
                    "due_date": EPOCH + timedelta(hours=rng.randint(-900, 900))
                    if number % 4
                    else None,
                    "deleted_at": EPOCH if number % 10 == 0 else None,
                    "version": 1,
                    "created_at": EPOCH + timedelta(minutes=number),
                    "updated_at": EPOCH + timedelta(minutes=number),
                }
            )
            if number % 2:
                links.append(
                    {"task_id": task_id, "category_id": rng.choice(categories[user.id]).id}
                )
    await session.execute(insert(Task), tasks)
    await session.execute(insert(task_categories), links)
    await session.commit()
    await session.execute(text("ANALYZE tasks, task_categories, categories, users"))
    return users[0], categories[users[0].id][0]


def _user_id_indexes(connection: Connection) -> set[str]:
    return {
        str(index["name"])
        for index in inspect(connection).get_indexes("tasks")
        if index["column_names"][:1] == ["user_id"]
    }


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def _plan(session: AsyncSession, statement: Select[Any]) -> list[dict[str, Any]]:
    sql = statement.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
    )
    document = await session.scalar(text(f"EXPLAIN (FORMAT JSON) {sql}"))
    return _nodes(document[0]["Plan"])


LIST_SHAPES: dict[str, dict[str, Any]] = {
    "default": {},
    "status": {"status": "completed"},
    "priority": {"priority": "high"},
    "due_date_from": {"due_date_from": "2026-01-30T00:00:00Z"},
    "due_date_to": {"due_date_to": "2025-12-05T00:00:00Z"},
    "due_date_range": {
        "due_date_from": "2026-01-01T00:00:00Z",
        "due_date_to": "2026-01-03T00:00:00Z",
    },
    "category_id": {},
    "q": {"q": "task 1"},
    **{
        f"sort by {field} {order}": {"sort_by": field, "sort_order": order}
        for field in ("created_at", "updated_at", "due_date", "priority", "title", "status")
        for order in ("asc", "desc")
    },
}


FILTERS = {"status", "priority", "due_date_from", "due_date_to", "category_id", "q"}


async def test_list_queries_use_a_user_id_index_and_never_scan_all_tasks(
    session: AsyncSession,
) -> None:
    user, category = await _seed(session)
    user_id_indexes = await (await session.connection()).run_sync(_user_id_indexes)
    assert user_id_indexes, "no index on tasks starts with user_id"
    dialect = session.get_bind().dialect

    for shape, params in LIST_SHAPES.items():
        if shape == "category_id":
            params = {"category_id": str(category.id)}
        statements = list_statements(
            user_id=user.id, query=TaskListQuery(**params), paging=PageParams(), dialect=dialect
        )
        assert statements.count is not None  # a page by offset is always counted
        for part, statement in (("count", statements.count), ("page", statements.page)):
            nodes = await _plan(session, statement)
            relations = {node.get("Relation Name") for node in nodes} - {None}
            if part == "count" and not set(params) & FILTERS:
                # The unfiltered total is the trigger-kept counter: one small row, no tasks.
                assert relations == {"task_counters"}, f"{shape} count reads {relations}"
                continue
            sequential = [
                node["Relation Name"] for node in nodes if node["Node Type"] == "Seq Scan"
            ]
            used = {node["Index Name"] for node in nodes if "Index Name" in node}
            assert sequential == [], f"{shape} {part}: sequential scan of {sequential}"
            assert used & user_id_indexes, f"{shape} {part}: no user_id index in {used}"
