"""The trash: deleted tasks listed with `deleted=true`, restored with POST .../restore, and
purged by the worker TRASH_RETENTION_DAYS after their deletion (a clock the test moves)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Settings
from taskapi.core.models import utcnow
from taskapi.tasks.models import Task, task_categories
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.factories import SignedIn
from tests.support.jobs import FakeClock, run_periodic_jobs
from tests.support.problems import assert_problem
from tests.support.tasks import TASKS, AddTask, add_category, link, stored

TRASH = f"{TASKS}?deleted=true"


def ago(**delta: float) -> datetime:
    return utcnow() - timedelta(**delta)


async def titles(client: httpx.AsyncClient, signed_in: SignedIn, url: str) -> list[str]:
    response = await client.get(url, headers=signed_in.headers)
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


async def test_delete_then_trash_then_restore(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = await client.post(TASKS, json={"title": "Water the plants"}, headers=alice.headers)
    task_id = created.json()["id"]
    work = await add_category(session, alice.user, "Home")
    assigned = await client.post(f"{TASKS}/{task_id}/categories/{work.id}", headers=alice.headers)
    assert assigned.json()["version"] == 2

    before = utcnow()
    assert (await client.delete(f"{TASKS}/{task_id}", headers=alice.headers)).status_code == 204
    assert await titles(client, alice, TASKS) == []
    trash = await client.get(TRASH, headers=alice.headers)
    assert trash.status_code == 200
    body = trash.json()
    assert (body["total"], body["page"], body["pages"]) == (1, 1, 1)
    [item] = body["items"]
    assert (item["id"], item["title"], item["version"]) == (task_id, "Water the plants", 2)
    deleted_at = datetime.fromisoformat(item["deleted_at"])
    assert before - timedelta(seconds=1) <= deleted_at <= utcnow()
    assert [category["name"] for category in item["categories"]] == ["Home"]

    restored = await client.post(f"{TASKS}/{task_id}/restore", headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["version"] == 3
    assert restored.json()["deleted_at"] is None
    assert [category["name"] for category in restored.json()["categories"]] == ["Home"]
    assert restored.headers["etag"] == '"3"'

    assert await titles(client, alice, TRASH) == []
    live = (await client.get(TASKS, headers=alice.headers)).json()
    assert (live["total"], [task["id"] for task in live["items"]]) == (1, [task_id])
    assert live["items"][0]["deleted_at"] is None
    row = await stored(session, uuid.UUID(task_id))
    assert row is not None
    assert (row.deleted_at, row.version) == (None, 3)


async def test_restore_answers_404_unless_the_task_is_in_your_trash(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    live = await add_task(alice.user, "Still here")
    bobs = await add_task(bob.user, "Bob's", deleted_at=ago(minutes=1))
    mine = await add_task(alice.user, "Mine", deleted_at=ago(minutes=1))
    for task_id in (live.id, bobs.id, uuid.uuid4()):
        response = await client.post(f"{TASKS}/{task_id}/restore", headers=alice.headers)
        assert_problem(response, 404, "not_found")
    assert (
        await client.post(f"{TASKS}/{mine.id}/restore", headers=alice.headers)
    ).status_code == 200
    again = await client.post(f"{TASKS}/{mine.id}/restore", headers=alice.headers)
    assert_problem(again, 404, "not_found")
    assert await titles(client, bob, TRASH) == ["Bob's"]


async def test_the_trash_lists_newest_deletion_first_with_filters_and_paging(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    for days, title in ((3, "report draft"), (1, "report final"), (2, "groceries")):
        await add_task(alice.user, title, deleted_at=ago(days=days))
    await add_task(alice.user, "report live")
    await add_task(bob.user, "report of Bob", deleted_at=ago(days=1))

    assert await titles(client, alice, TRASH) == ["report final", "groceries", "report draft"]
    assert await titles(client, alice, f"{TRASH}&sort_by=title&sort_order=asc") == [
        "report final",
        "groceries",
        "report draft",
    ]
    searched = await client.get(f"{TRASH}&q=report", headers=alice.headers)
    assert [item["title"] for item in searched.json()["items"]] == [
        "report final",
        "report draft",
    ]
    assert searched.json()["total"] == 2

    first = (await client.get(f"{TRASH}&limit=2", headers=alice.headers)).json()
    assert (first["total"], first["pages"]) == (3, 2)
    second = (await client.get(f"{TRASH}&limit=2&page=2", headers=alice.headers)).json()
    assert [item["title"] for item in [*first["items"], *second["items"]]] == [
        "report final",
        "groceries",
        "report draft",
    ]

    by_cursor: list[str] = []
    url = f"{TRASH}&limit=1"
    while True:
        page = (await client.get(url, headers=alice.headers)).json()
        by_cursor += [item["title"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"{TRASH}&limit=1&cursor={page['next_cursor']}"
    assert by_cursor == ["report final", "groceries", "report draft"]

    live_cursor = (await client.get(f"{TASKS}?limit=1", headers=alice.headers)).json()
    assert live_cursor["next_cursor"] is None
    wrong_list = await client.get(
        f"{TRASH}&cursor={first['next_cursor']}&sort_by=title", headers=alice.headers
    )
    assert wrong_list.status_code == 200, "the trash has one order whatever sort_by says"
    live_list = await client.get(f"{TASKS}?cursor={first['next_cursor']}", headers=alice.headers)
    assert_problem(live_list, 400, "invalid_cursor")


async def test_the_live_count_follows_deletes_and_restores(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    ids = [
        (await client.post(TASKS, json={"title": f"Task {n}"}, headers=alice.headers)).json()["id"]
        for n in range(3)
    ]
    await client.delete(f"{TASKS}/{ids[0]}", headers=alice.headers)
    await client.delete(f"{TASKS}/{ids[1]}", headers=alice.headers)
    assert (await client.get(TASKS, headers=alice.headers)).json()["total"] == 1
    await client.post(f"{TASKS}/{ids[0]}/restore", headers=alice.headers)
    assert (await client.get(TASKS, headers=alice.headers)).json()["total"] == 2
    assert (await client.get(TRASH, headers=alice.headers)).json()["total"] == 1


async def test_the_worker_purges_tasks_deleted_more_than_the_retention_ago(
    app_factory: AppFactory,
    make_settings: SettingsFactory,
    settings: Settings,
    session: AsyncSession,
    alice: SignedIn,
    add_task: AddTask,
) -> None:
    app: FastAPI = await app_factory(
        make_settings(trash_retention_days=7, jwt_secret_key=settings.secret_key)
    )
    now = utcnow()
    old = await add_task(alice.user, "Deleted long ago", deleted_at=now - timedelta(days=8))
    recent = await add_task(alice.user, "Deleted lately", deleted_at=now - timedelta(days=6))
    live = await add_task(alice.user, "Live")
    home = await add_category(session, alice.user, "Home")
    await link(session, old, home)
    await link(session, recent, home)

    clock = FakeClock(now=now)
    assert await run_periodic_jobs(app, clock=clock) >= 1
    assert await stored(session, old.id) is None
    assert await stored(session, recent.id) is not None
    assert await stored(session, live.id) is not None
    links = await session.scalar(select(func.count()).select_from(task_categories))
    await session.commit()
    assert links == 1

    # The purge runs hourly: a day and a bit later the other one has passed the retention.
    clock.advance(days=1, hours=1)
    assert await run_periodic_jobs(app, clock=clock) >= 1
    assert await stored(session, recent.id) is None
    assert await stored(session, live.id) is not None
    async with make_client(app) as client:
        assert await titles(client, alice, TRASH) == []
    remaining = await session.scalar(select(func.count()).select_from(Task))
    await session.commit()
    assert remaining == 1
