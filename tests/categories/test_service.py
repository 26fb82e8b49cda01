from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskapi.categories import service
from taskapi.categories.models import Category
from taskapi.categories.schemas import CategoryCreate, CategoryUpdate
from taskapi.tasks import service as tasks_service
from taskapi.tasks.models import Task, task_categories
from tests.support.apps import state_of
from tests.support.categories import stored_categories
from tests.support.factories import SignedIn
from tests.support.races import until_a_session_waits_for_a_lock


async def test_a_name_conflict_leaves_the_transaction_usable(
    session: AsyncSession, alice: SignedIn
) -> None:
    await service.create_category(
        session=session, user=alice.user, data=CategoryCreate(name="Work")
    )

    with pytest.raises(service.CategoryExists):
        await service.create_category(
            session=session, user=alice.user, data=CategoryCreate(name="Work")
        )
    await service.create_category(
        session=session, user=alice.user, data=CategoryCreate(name="Home")
    )
    await session.commit()

    assert [category.name for category in await stored_categories(session, alice)] == [
        "Home",
        "Work",
    ]


async def test_a_rename_conflict_leaves_the_transaction_usable(
    session: AsyncSession, alice: SignedIn
) -> None:
    await service.create_category(
        session=session, user=alice.user, data=CategoryCreate(name="Home")
    )
    work = await service.create_category(
        session=session, user=alice.user, data=CategoryCreate(name="Work")
    )

    with pytest.raises(service.CategoryExists):
        await service.update_category(
            session=session, user=alice.user, category_id=work.id, data=CategoryUpdate(name="Home")
        )
    await service.create_category(
        session=session, user=alice.user, data=CategoryCreate(name="Errands")
    )
    await session.commit()

    assert [category.name for category in await stored_categories(session, alice)] == [
        "Errands",
        "Home",
        "Work",
    ]


async def test_list_orders_by_case_folded_name_then_exact_name(
    session: AsyncSession, alice: SignedIn
) -> None:
    for name in ["straße", "STRASSE", "Strasse", "Zebra", "äpfel", "apple"]:
        await service.create_category(
            session=session, user=alice.user, data=CategoryCreate(name=name)
        )
    await session.commit()

    categories = await service.list_categories(session=session, user=alice.user)
    await session.commit()

    # "straße".casefold() == "strasse": the three sort together, then by code point.
    assert [category.name for category in categories] == [
        "apple",
        "STRASSE",
        "Strasse",
        "straße",
        "Zebra",
        "äpfel",
    ]


@pytest.mark.needs_services(
    "postgresql",
    reason="needs two writers at once; SQLite serialises whole transactions",
)
async def test_a_category_deleted_during_an_assignment_is_not_found_not_a_conflict(
    app: FastAPI, session: AsyncSession, alice: SignedIn
) -> None:
    task = Task(user_id=alice.user.id, title="Write the report")
    category = Category(user_id=alice.user.id, name="Doomed")
    session.add_all([task, category])
    await session.commit()
    sessionmaker: async_sessionmaker[AsyncSession] = state_of(app)["sessionmaker"]

    async with sessionmaker() as deleter, sessionmaker() as assigner:
        await deleter.execute(delete(Category).where(Category.id == category.id))
        attempt = asyncio.create_task(
            tasks_service.assign_category(
                session=assigner, user=alice.user, task_id=task.id, category_id=category.id
            )
        )
        # The link's foreign key check waits for the deleter's row lock; then it commits.
        await until_a_session_waits_for_a_lock(session, what="the assignment")
        await deleter.commit()
        with pytest.raises(service.CategoryNotFound) as caught:
            await attempt
        await assigner.rollback()

    assert isinstance(caught.value.__cause__, IntegrityError)
    assert (await session.execute(select(task_categories))).all() == []
    await session.commit()
