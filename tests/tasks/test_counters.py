"""The unfiltered list's total comes from task_counters, kept by triggers: it must equal
a real count after every kind of write, through the API or straight to the table."""

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.tasks.models import Task, TaskCounter
from tests.support.factories import SignedIn
from tests.support.tasks import TASKS, AddTask


async def counted(session: AsyncSession, user: User) -> tuple[int | None, int]:
    kept = await session.scalar(
        select(TaskCounter.live_tasks).where(TaskCounter.user_id == user.id)
    )
    real = await session.scalar(
        select(func.count()).where(Task.user_id == user.id, Task.deleted_at.is_(None))
    )
    await session.commit()
    return kept, real or 0


async def listed_total(client: httpx.AsyncClient, signed_in: SignedIn) -> int:
    response = await client.get(TASKS, headers=signed_in.headers)
    assert response.status_code == 200
    total: int = response.json()["total"]
    return total


async def test_counter_follows_every_write(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    created = [
        (await client.post(TASKS, json={"title": f"Task {n}"}, headers=alice.headers)).json()
        for n in range(3)
    ]
    assert await counted(session, alice.user) == (3, 3)

    await client.delete(f"{TASKS}/{created[0]['id']}", headers=alice.headers)
    assert await counted(session, alice.user) == (2, 2)

    await add_task(alice.user, "Inserted directly")
    gone = await add_task(alice.user, "Inserted deleted", deleted_at=datetime.now(UTC))
    assert await counted(session, alice.user) == (3, 3)

    await session.execute(update(Task).where(Task.id == gone.id).values(deleted_at=None))
    await session.commit()
    assert await counted(session, alice.user) == (4, 4)

    await session.execute(delete(Task).where(Task.id == uuid.UUID(created[1]["id"])))
    await session.commit()
    assert await counted(session, alice.user) == (3, 3)
    assert await listed_total(client, alice) == 3


async def test_filtered_totals_still_count_matching_rows(
    client: httpx.AsyncClient, alice: SignedIn, add_task: AddTask
) -> None:
    await add_task(alice.user, "High one", priority="high")
    await add_task(alice.user, "Low one", priority="low")
    response = await client.get(TASKS, params={"priority": "high"}, headers=alice.headers)
    assert response.json()["total"] == 1
    assert await listed_total(client, alice) == 2


async def test_a_user_without_tasks_lists_zero_and_others_do_not_leak(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    await add_task(bob.user, "Bob's")
    assert await listed_total(client, alice) == 0
    assert await listed_total(client, bob) == 1


async def test_deleting_the_account_removes_its_counter(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    await add_task(alice.user, "Mine")
    assert (await client.delete("/api/v1/users/me", headers=alice.headers)).status_code == 204
    remaining = await session.scalar(
        select(func.count()).select_from(TaskCounter).where(TaskCounter.user_id == alice.user.id)
    )
    assert remaining == 0
