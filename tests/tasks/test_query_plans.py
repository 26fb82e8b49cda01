"""PostgreSQL query plans of the task list: the default list, each filter and each sort,
by page number and by cursor, reach one user's tasks through the index named for that
shape, never by a sequential scan of every user's tasks. A sort with an index of its own
reads the page in that order instead of sorting the user's tasks.

PostgreSQL only, on purpose: EXPLAIN output and its planner are PostgreSQL's own, and the
indexes exist for the production database. On SQLite this test is skipped, and only this one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
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
from taskapi.tasks.service import list_statements, list_tasks

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


async def _plan(
    session: AsyncSession, statement: Select[Any], params: dict[str, Any]
) -> list[dict[str, Any]]:
    sql = statement.params(params).compile(
        dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
    )
    document = await session.scalar(text(f"EXPLAIN (FORMAT JSON) {sql}"))
    return _nodes(document[0]["Plan"])


CREATED_AT = "ix_tasks_user_id_created_at"
ANY_USER_INDEX = "any index that starts with user_id"
"""For a shape no index orders or narrows: the planner picks among equivalent ones."""


@dataclass(frozen=True)
class Shape:
    params: dict[str, Any]
    page: str
    """The index the page is read through."""
    count: str | None = None
    """The index a filtered count reads; None: unfiltered, the total is the counter."""
    in_order: bool = False
    """The index gives the page's order: no Sort node (an Incremental Sort on id is fine)."""


def _sorted_by(field: str, order: str, index: str) -> Shape:
    return Shape({"sort_by": field, "sort_order": order}, page=index, in_order=True)


DUE_DATE = "ix_tasks_user_id_due_date"
CATEGORY_LINKS = "ix_task_categories_category_id"
LIST_SHAPES: dict[str, Shape] = {
    "default": Shape({}, page=CREATED_AT, in_order=True),
    "status": Shape({"status": "completed"}, page=CREATED_AT, count="ix_tasks_user_id_status"),
    "priority": Shape({"priority": "high"}, page=CREATED_AT, count="ix_tasks_user_id_priority"),
    "due_date_from": Shape(
        {"due_date_from": "2026-01-30T00:00:00Z"}, page=DUE_DATE, count=DUE_DATE
    ),
    "due_date_to": Shape({"due_date_to": "2025-12-05T00:00:00Z"}, page=DUE_DATE, count=DUE_DATE),
    "due_date_range": Shape(
        {"due_date_from": "2026-01-01T00:00:00Z", "due_date_to": "2026-01-03T00:00:00Z"},
        page=DUE_DATE,
        count=DUE_DATE,
    ),
    # Filled in with the seeded category.
    "category_id": Shape({}, page=CATEGORY_LINKS, count=CATEGORY_LINKS),
    "q": Shape({"q": "task 1"}, page=CREATED_AT, count=ANY_USER_INDEX),
    **{
        f"sort by {field} {order}": _sorted_by(field, order, index)
        for field, index in (
            ("created_at", CREATED_AT),
            ("updated_at", "ix_tasks_user_id_updated_at"),
            ("priority", "ix_tasks_user_id_priority"),
            ("status", "ix_tasks_user_id_status"),
            ("title", "ix_tasks_user_id_title_sort"),
        )
        for order in ("asc", "desc")
    },
    "sort by due_date asc": _sorted_by("due_date", "asc", DUE_DATE),
    # NULLS LAST both ways: descending is the reverse of no index, so the page is sorted.
    "sort by due_date desc": Shape(
        {"sort_by": "due_date", "sort_order": "desc"}, page=ANY_USER_INDEX
    ),
}


def _check(
    shape_name: str, part: str, nodes: list[dict[str, Any]], expected: str, user_ids: set[str]
) -> None:
    where = f"{shape_name} {part}"
    sequential = [node["Relation Name"] for node in nodes if node["Node Type"] == "Seq Scan"]
    used = {node["Index Name"] for node in nodes if "Index Name" in node}
    assert sequential == [], f"{where}: sequential scan of {sequential}"
    assert used & user_ids, f"{where}: no user_id index in {used}"
    if expected != ANY_USER_INDEX:
        assert expected in used, f"{where}: {expected} not in {used}"


async def test_each_list_shape_reads_through_its_index_and_never_scans_all_tasks(
    session: AsyncSession,
) -> None:
    user, category = await _seed(session)
    user_id_indexes = await (await session.connection()).run_sync(_user_id_indexes)
    assert user_id_indexes, "no index on tasks starts with user_id"
    dialect = session.get_bind().dialect

    for name, shape in LIST_SHAPES.items():
        params = {"category_id": str(category.id)} if name == "category_id" else shape.params
        query = TaskListQuery(**params)
        # A short first page: even the narrowest shape then has a next one.
        first = await list_tasks(
            session=session, user=user, query=query, paging=PageParams(limit=2)
        )
        assert first.next_cursor is not None, f"{name}: the seed fills more than one page"
        by_page = list_statements(
            user_id=user.id, query=query, paging=PageParams(), dialect=dialect
        )
        by_cursor = list_statements(
            user_id=user.id,
            query=query,
            paging=PageParams(cursor=first.next_cursor),
            dialect=dialect,
        )
        assert by_page.count is not None
        count_nodes = await _plan(session, by_page.count, by_page.params)
        if shape.count is None:
            relations = {node.get("Relation Name") for node in count_nodes} - {None}
            # The unfiltered total is the trigger-kept counter: one small row, no tasks.
            assert relations == {"task_counters"}, f"{name} count reads {relations}"
        else:
            _check(name, "count", count_nodes, shape.count, user_id_indexes)
        for part, statements in (("page", by_page), ("cursor page", by_cursor)):
            nodes = await _plan(session, statements.page, statements.params)
            _check(name, part, nodes, shape.page, user_id_indexes)
            if shape.in_order:
                sorts = [node for node in nodes if node["Node Type"] == "Sort"]
                assert sorts == [], f"{name} {part}: sorts instead of reading {shape.page} in order"
