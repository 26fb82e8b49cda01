from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.categories import service
from taskapi.categories.schemas import CategoryCreate, CategoryUpdate
from tests.categories.conftest import stored_categories
from tests.factories import SignedIn


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
