"""GET /tasks/stats and the `completed_at` it counts by (DESIGN §7.5, §7.6)."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Settings
from taskapi.tasks import service
from taskapi.tasks.models import TaskPriority, TaskStatus
from taskapi.tasks.schemas import STATS_DAYS
from tests.support.factories import SignedIn, sign_in
from tests.support.problems import assert_problem, field_errors
from tests.support.tasks import TASKS, AddTask, in_days, stored

STATS = f"{TASKS}/stats"
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- completed_at ---------------------------------------------------------------------------


async def test_completing_sets_completed_at_and_reopening_clears_it(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = (await client.post(TASKS, json={"title": "Ship it"}, headers=alice.headers)).json()
    task_id = uuid.UUID(created["id"])
    assert created["completed_at"] is None
    before = datetime.now(UTC)

    done = await client.patch(
        f"{TASKS}/{created['id']}",
        json={"status": "completed", "version": 1},
        headers=alice.headers,
    )
    assert done.status_code == 200, done.text
    completed_at = datetime.fromisoformat(done.json()["completed_at"])
    assert before - timedelta(seconds=1) <= completed_at <= datetime.now(UTC)
    row = await stored(session, task_id)
    assert row is not None
    assert row.completed_at == completed_at

    listed = await client.get(TASKS, headers=alice.headers)
    assert listed.json()["items"][0]["completed_at"] == done.json()["completed_at"]

    reopened = await client.patch(
        f"{TASKS}/{created['id']}",
        json={"status": "in_progress", "version": 2},
        headers=alice.headers,
    )
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["completed_at"] is None
    row = await stored(session, task_id)
    assert row is not None
    assert row.completed_at is None


async def test_completing_again_or_changing_other_fields_keeps_completed_at(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    finished = at("2030-01-02T03:04:05+00:00")
    task = await add_task(alice.user, status=TaskStatus.COMPLETED, completed_at=finished)

    again = await client.patch(
        f"{TASKS}/{task.id}", json={"status": "completed", "version": 1}, headers=alice.headers
    )
    renamed = await client.patch(
        f"{TASKS}/{task.id}", json={"title": "Renamed", "version": 2}, headers=alice.headers
    )

    assert again.status_code == 200, again.text
    assert renamed.status_code == 200, renamed.text
    assert datetime.fromisoformat(renamed.json()["completed_at"]) == finished
    row = await stored(session, task.id)
    assert row is not None
    assert row.completed_at == finished


# --- the endpoint ---------------------------------------------------------------------------


async def test_stats_count_only_the_callers_live_tasks(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    now = datetime.now(UTC)
    await add_task(alice.user, priority=TaskPriority.HIGH)
    await add_task(alice.user, status=TaskStatus.IN_PROGRESS, due_date=now - timedelta(hours=1))
    await add_task(alice.user, status=TaskStatus.COMPLETED, completed_at=now, due_date=in_days(-3))
    await add_task(alice.user, priority=TaskPriority.LOW, due_date=in_days(3))
    await add_task(alice.user, deleted_at=now, priority=TaskPriority.HIGH)
    await add_task(bob.user, status=TaskStatus.COMPLETED, completed_at=now)

    response = await client.get(STATS, headers=alice.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["by_status"] == {"pending": 2, "in_progress": 1, "completed": 1}
    assert body["by_priority"] == {"low": 1, "medium": 2, "high": 1}
    # The completed task was due three days ago: done, so not overdue.
    assert body["overdue"] == 1
    assert body["due_next_7_days"] == 1
    days = body["completed_per_day"]
    assert len(days) == STATS_DAYS
    assert days[-1] == {"date": now.date().isoformat(), "count": 1}
    assert [date.fromisoformat(day["date"]) for day in days] == [
        now.date() - timedelta(days=offset) for offset in range(STATS_DAYS - 1, -1, -1)
    ]
    assert sum(day["count"] for day in days) == 1
    assert response.headers["cache-control"] == "no-store"


async def test_stats_of_a_user_without_tasks_are_zeros(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    body = (await client.get(STATS, params={"tz": "Asia/Tokyo"}, headers=alice.headers)).json()

    assert body["by_status"] == {"pending": 0, "in_progress": 0, "completed": 0}
    assert body["by_priority"] == {"low": 0, "medium": 0, "high": 0}
    assert (body["overdue"], body["due_today"], body["due_next_7_days"]) == (0, 0, 0)
    assert [day["count"] for day in body["completed_per_day"]] == [0] * STATS_DAYS
    tokyo_today = datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo")).date()
    assert body["completed_per_day"][-1]["date"] == tokyo_today.isoformat()


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "utc+2", "../../etc/passwd", "localtime", ""]
)
async def test_an_unknown_time_zone_is_a_400_naming_tz(
    client: httpx.AsyncClient, alice: SignedIn, zone: str
) -> None:
    response = await client.get(STATS, params={"tz": zone}, headers=alice.headers)

    assert field_errors(response) == {"tz"}


async def test_stats_need_a_verified_signed_in_user(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    unverified = await sign_in(session, settings, is_active=False)

    assert_problem(await client.get(STATS), 401, "not_authenticated")
    assert_problem(await client.get(STATS, headers=unverified.headers), 403, "email_not_verified")


async def test_stats_is_not_taken_for_a_task_id(client: httpx.AsyncClient, alice: SignedIn) -> None:
    """/tasks/stats is its own route, declared before /tasks/{task_id}."""
    response = await client.get(f"{TASKS}/stats", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {
        "by_status",
        "by_priority",
        "overdue",
        "due_today",
        "due_next_7_days",
        "completed_per_day",
    }


# --- days in a time zone (the service with a fixed clock) -----------------------------------


async def test_days_are_calendar_days_of_the_zone(
    session: AsyncSession, alice: SignedIn, add_task: AddTask
) -> None:
    # 31 Mar 2030 is the day Berlin moves to summer time: a 23-hour day from 30 Mar 23:00
    # UTC to 31 Mar 22:00 UTC. 23:30 UTC on 30 Mar is already 00:30 on 31 Mar there.
    now = at("2030-03-31T10:00:00+00:00")
    await add_task(
        alice.user, status=TaskStatus.COMPLETED, completed_at=at("2030-03-30T23:30:00+00:00")
    )
    await add_task(
        alice.user, status=TaskStatus.COMPLETED, completed_at=at("2030-03-30T21:30:00+00:00")
    )
    # Outside the 30-day window in both zones.
    await add_task(
        alice.user, status=TaskStatus.COMPLETED, completed_at=at("2030-02-28T12:00:00+00:00")
    )
    # Due later today in Berlin (before 22:00 UTC), tomorrow, in six days, in seven days.
    await add_task(alice.user, due_date=at("2030-03-31T21:00:00+00:00"))
    await add_task(alice.user, due_date=at("2030-04-01T09:00:00+00:00"))
    await add_task(alice.user, due_date=at("2030-04-06T21:00:00+00:00"))
    await add_task(alice.user, due_date=at("2030-04-07T09:00:00+00:00"))
    # Overdue since this morning: not "due today" any more.
    await add_task(alice.user, status=TaskStatus.IN_PROGRESS, due_date=at("2030-03-31T06:00:00Z"))

    berlin = await service.task_stats(session=session, user=alice.user, zone=BERLIN, now=now)
    utc = await service.task_stats(
        session=session, user=alice.user, zone=zoneinfo.ZoneInfo("UTC"), now=now
    )

    berlin_days = {day.date: day.count for day in berlin.completed_per_day}
    assert berlin_days[date(2030, 3, 31)] == 1
    assert berlin_days[date(2030, 3, 30)] == 1
    assert berlin.completed_per_day[0].date == date(2030, 3, 2)
    assert sum(berlin_days.values()) == 2
    utc_days = {day.date: day.count for day in utc.completed_per_day}
    assert utc_days[date(2030, 3, 30)] == 2
    assert utc_days.get(date(2030, 3, 31)) == 0

    assert (berlin.overdue, berlin.due_today, berlin.due_next_7_days) == (1, 1, 3)
    assert (utc.overdue, utc.due_today, utc.due_next_7_days) == (1, 1, 3)


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "PUT", "POST"])
async def test_other_methods_on_stats_are_405_not_a_task_id(
    client: httpx.AsyncClient, alice: SignedIn, method: str
) -> None:
    response = await client.request(method, STATS, json={}, headers=alice.headers)

    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD"
