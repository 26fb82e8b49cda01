"""The task service called directly, as other features (categories) call it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.errors import BadRequest, PreconditionRequired
from taskapi.core.pagination import Page, PageParams
from taskapi.tasks import service
from taskapi.tasks.models import Task, TaskPriority, TaskStatus
from taskapi.tasks.schemas import TaskCreate, TaskListQuery, TaskUpdate
from taskapi.tasks.service import TaskNotFound, VersionConflict
from tests.support.factories import SignedIn
from tests.support.tasks import AddTask, add_category, in_days, link, stored


async def test_create_task_stores_a_pending_task_at_version_1(
    session: AsyncSession, alice: SignedIn
) -> None:
    due = in_days(1)
    task = await service.create_task(
        session=session,
        user=alice.user,
        data=TaskCreate(title=" Plan ", description="d", priority=TaskPriority.LOW, due_date=due),
    )
    await session.commit()

    assert task.categories == []
    row = await stored(session, task.id)
    assert row is not None
    assert (row.user_id, row.title, row.description, row.priority, row.due_date) == (
        alice.user.id,
        "Plan",
        "d",
        TaskPriority.LOW,
        due,
    )
    assert (row.status, row.version, row.deleted_at) == (TaskStatus.PENDING, 1, None)
    assert row.created_at == row.updated_at


@pytest.mark.parametrize(
    "fields",
    [
        {"title": "ab"},
        {"title": "x" * 201},
        {"title": "Fine", "description": "x" * 2001},
        {"title": "Fine", "due_date": datetime(2020, 1, 1, tzinfo=UTC)},
        {"title": "Fine", "priority": "urgent"},
    ],
)
def test_task_create_rules(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TaskCreate.model_validate(fields)


def test_task_create_takes_naive_datetimes_as_utc() -> None:
    naive = in_days(1).replace(tzinfo=None)
    assert TaskCreate(title="Fine", due_date=naive).due_date == naive.replace(tzinfo=UTC)


async def test_get_task_loads_categories_in_name_order(
    session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    task = await add_task(alice.user, "Filed")
    await link(
        session,
        task,
        await add_category(session, alice.user, "Zeta"),
        await add_category(session, alice.user, "Alpha"),
    )
    session.expunge_all()

    found = await service.get_task(session=session, user=alice.user, task_id=task.id)

    assert [category.name for category in found.categories] == ["Alpha", "Zeta"]


async def test_get_task_hides_missing_deleted_and_foreign_tasks(
    session: AsyncSession, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    deleted = await add_task(alice.user, "Gone", deleted_at=datetime.now(UTC))
    foreign = await add_task(bob.user, "Bob's")

    for task_id in (uuid.uuid4(), deleted.id, foreign.id):
        with pytest.raises(TaskNotFound) as caught:
            await service.get_task(session=session, user=alice.user, task_id=task_id)
        assert (caught.value.status, caught.value.code) == (404, "not_found")


@pytest.mark.parametrize(
    ("total", "limit", "pages"), [(0, 20, 0), (1, 20, 1), (20, 20, 1), (21, 20, 2), (3, 1, 3)]
)
def test_pages_is_the_ceiling_of_total_over_limit(total: int, limit: int, pages: int) -> None:
    assert Page(items=[], total=total, page=1, limit=limit, next_cursor=None).pages == pages


async def test_list_tasks_returns_one_page_and_the_total(
    session: AsyncSession, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    for number in range(5):
        await add_task(alice.user, f"Task {number}")
    await add_task(alice.user, "Deleted", deleted_at=datetime.now(UTC))
    await add_task(bob.user, "Bob's")

    page = await service.list_tasks(
        session=session,
        user=alice.user,
        query=TaskListQuery(sort_by="title", sort_order="asc"),
        paging=PageParams(page=2, limit=2),
    )

    assert [task["title"] for task in page.items] == ["Task 2", "Task 3"]
    assert (page.total, page.page, page.limit, page.pages) == (5, 2, 2, 3)
    assert all(task["categories"] == [] for task in page.items)


async def test_list_tasks_past_the_last_page_is_empty_with_the_total(
    session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    await add_task(alice.user, "Only")

    page = await service.list_tasks(
        session=session, user=alice.user, query=TaskListQuery(), paging=PageParams(page=3)
    )

    assert (list(page.items), page.total, page.pages) == ([], 1, 1)


async def test_update_task_changes_only_what_was_sent(
    session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    task = await add_task(alice.user, "Before", description="keep", due_date=in_days(2))
    before = task.updated_at

    updated = await service.update_task(
        session=session,
        user=alice.user,
        task_id=task.id,
        changes=TaskUpdate.model_validate({"status": "completed", "due_date": None, "version": 1}),
    )
    await session.commit()

    assert (updated.version, updated.status, updated.due_date) == (2, TaskStatus.COMPLETED, None)
    assert updated.categories == []
    row = await stored(session, task.id)
    assert row is not None
    assert (row.title, row.description, row.status, row.due_date, row.version) == (
        "Before",
        "keep",
        TaskStatus.COMPLETED,
        None,
        2,
    )
    assert row.updated_at > before


def test_task_update_refuses_null_for_title_status_and_priority() -> None:
    for field in ("title", "status", "priority"):
        with pytest.raises(ValidationError) as caught:
            TaskUpdate.model_validate({field: None, "version": 1})
        assert [error["loc"] for error in caught.value.errors()] == [(field,)]


async def test_update_task_version_rules(
    session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    task = await add_task(alice.user, "Versioned", version=3)

    def changes(**fields: object) -> TaskUpdate:
        return TaskUpdate.model_validate({"title": "Changed", **fields})

    with pytest.raises(PreconditionRequired):
        await service.update_task(
            session=session, user=alice.user, task_id=task.id, changes=changes()
        )
    with pytest.raises(BadRequest):
        await service.update_task(
            session=session,
            user=alice.user,
            task_id=task.id,
            changes=changes(version=3),
            if_match=2,
        )
    with pytest.raises(VersionConflict) as caught:
        await service.update_task(
            session=session, user=alice.user, task_id=task.id, changes=changes(), if_match=2
        )
    assert (caught.value.status, caught.value.code) == (409, "version_conflict")
    assert caught.value.extra == {"current_version": 3}

    updated = await service.update_task(
        session=session, user=alice.user, task_id=task.id, changes=changes(), if_match=3
    )
    await session.commit()
    assert (updated.title, updated.version) == ("Changed", 4)


async def test_update_task_of_a_foreign_or_deleted_task_is_not_found_whatever_the_version(
    session: AsyncSession, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    foreign = await add_task(bob.user, "Bob's")
    deleted = await add_task(alice.user, "Gone", deleted_at=datetime.now(UTC))

    foreign_id = foreign.id
    for task_id in (foreign_id, deleted.id, uuid.uuid4()):
        for version in (1, 7):
            with pytest.raises(TaskNotFound):
                await service.update_task(
                    session=session,
                    user=alice.user,
                    task_id=task_id,
                    changes=TaskUpdate(title="Hijack", version=version),
                )
    await session.rollback()
    row = await stored(session, foreign_id)
    assert row is not None
    assert (row.title, row.version) == ("Bob's", 1)


async def test_delete_task_keeps_the_row_and_then_hides_it(
    session: AsyncSession, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    task = await add_task(alice.user, "Doomed")
    foreign = await add_task(bob.user, "Bob's")
    foreign_id = foreign.id

    await service.delete_task(session=session, user=alice.user, task_id=task.id)
    await session.commit()

    row = await stored(session, task.id)
    assert row is not None
    assert row.deleted_at is not None
    with pytest.raises(TaskNotFound):
        await service.delete_task(session=session, user=alice.user, task_id=task.id)
    with pytest.raises(TaskNotFound):
        await service.delete_task(session=session, user=alice.user, task_id=foreign_id)
    await session.rollback()
    untouched = await stored(session, foreign_id)
    assert untouched is not None
    assert untouched.deleted_at is None


async def test_touch_task_bumps_version_and_updated_at(
    session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    task = await add_task(alice.user, "Touched", version=2)
    before = task.updated_at
    loaded = await session.get(Task, task.id)
    assert loaded is not None

    await service.touch_task(session=session, task=loaded)
    await session.commit()

    assert loaded.version == 3
    assert loaded.updated_at > before
    row = await stored(session, task.id)
    assert row is not None
    assert (row.version, row.updated_at, row.title) == (3, loaded.updated_at, "Touched")
    with pytest.raises(VersionConflict) as caught:
        await service.update_task(
            session=session,
            user=alice.user,
            task_id=task.id,
            changes=TaskUpdate(title="Stale", version=2),
        )
    assert caught.value.extra == {"current_version": 3}


async def test_touch_task_of_a_task_deleted_meanwhile_is_not_found(
    session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    task = await add_task(alice.user, "Touched")
    loaded = await session.get(Task, task.id)
    assert loaded is not None
    await service.delete_task(session=session, user=alice.user, task_id=task.id)

    with pytest.raises(TaskNotFound):
        await service.touch_task(session=session, task=loaded)
