"""Recurring tasks: the RRULE subset, the next occurrence (in UTC, across DST changes), and
completing a recurring task through the API, once even when two completions race."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.tasks.models import Task, TaskStatus
from taskapi.tasks.recurrence import InvalidRecurrence, Recurrence
from tests.support.apps import make_client
from tests.support.factories import SignedIn
from tests.support.problems import assert_problem
from tests.support.tasks import TASKS, add_category, in_days, iso, stored


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def following(rule: str, due: datetime) -> tuple[datetime, str] | None:
    result = Recurrence.parse(rule).next_after(due)
    return None if result is None else (result[0], str(result[1]))


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("FREQ=DAILY", "FREQ=DAILY"),
        ("rrule:freq=weekly;byday=mo,we", "FREQ=WEEKLY;BYDAY=MO,WE"),
        ("COUNT=3;INTERVAL=2;FREQ=MONTHLY", "FREQ=MONTHLY;INTERVAL=2;COUNT=3"),
        ("FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYDAY=-1FR"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,-1", "FREQ=MONTHLY;BYMONTHDAY=1,-1"),
        ("FREQ=YEARLY;UNTIL=20351231T000000Z", "FREQ=YEARLY;UNTIL=20351231T000000Z"),
        ("FREQ=DAILY;UNTIL=20351231;", "FREQ=DAILY;UNTIL=20351231"),
    ],
)
def test_accepted_rules_are_stored_in_one_spelling(given: str, canonical: str) -> None:
    assert str(Recurrence.parse(given)) == canonical


@pytest.mark.parametrize(
    "rule",
    [
        "",
        "FREQ=HOURLY",
        "FREQ=SECONDLY",
        "INTERVAL=2",
        "FREQ=DAILY;BYHOUR=9",
        "FREQ=DAILY;FREQ=WEEKLY",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;INTERVAL=x",
        "FREQ=DAILY;COUNT=0",
        "FREQ=DAILY;COUNT=2;UNTIL=20351231",
        "FREQ=DAILY;UNTIL=2035-12-31",
        "FREQ=DAILY;UNTIL=20351231T000000",
        "FREQ=WEEKLY;BYDAY=MONDAY",
        "FREQ=WEEKLY;BYDAY=1MO",
        "FREQ=MONTHLY;BYDAY=0MO",
        "FREQ=WEEKLY;BYMONTHDAY=1",
        "FREQ=MONTHLY;BYMONTHDAY=32",
        "FREQ=MONTHLY;BYMONTHDAY=0",
        "FREQ=DAILY;X-NAME=1",
        "FREQ",
        "DTSTART:20300101T000000Z\nRRULE:FREQ=DAILY",
        "FREQ=DAILY;" + "INTERVAL=1;" * 100,
    ],
)
def test_anything_else_is_invalid(rule: str) -> None:
    with pytest.raises(InvalidRecurrence) as refused:
        Recurrence.parse(rule)
    assert refused.value.code == "invalid_recurrence"
    assert refused.value.extra["errors"][0]["field"] == "recurrence"


def test_daily_keeps_the_time_of_day() -> None:
    assert following("FREQ=DAILY", utc(2030, 1, 31, 9)) == (utc(2030, 2, 1, 9), "FREQ=DAILY")
    assert following("FREQ=DAILY;INTERVAL=3", utc(2030, 1, 1, 9, 30)) == (
        utc(2030, 1, 4, 9, 30),
        "FREQ=DAILY;INTERVAL=3",
    )


def test_weekly_on_chosen_days() -> None:
    monday = utc(2030, 1, 7, 17)
    rule = "FREQ=WEEKLY;BYDAY=MO,WE,FR"
    assert following(rule, monday) == (utc(2030, 1, 9, 17), rule)
    assert following(rule, utc(2030, 1, 11, 17)) == (utc(2030, 1, 14, 17), rule)
    every_other = "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"
    assert following(every_other, utc(2030, 1, 8, 8)) == (utc(2030, 1, 22, 8), every_other)


def test_monthly_on_the_31st_skips_shorter_months() -> None:
    assert following("FREQ=MONTHLY", utc(2030, 1, 31, 9)) == (utc(2030, 3, 31, 9), "FREQ=MONTHLY")
    rule = "FREQ=MONTHLY;BYMONTHDAY=31"
    assert following(rule, utc(2030, 3, 31, 9)) == (utc(2030, 5, 31, 9), rule)
    last_day = "FREQ=MONTHLY;BYMONTHDAY=-1"
    assert following(last_day, utc(2030, 1, 31, 9)) == (utc(2030, 2, 28, 9), last_day)


def test_yearly_on_29_february_waits_for_the_next_leap_year() -> None:
    assert following("FREQ=YEARLY", utc(2028, 2, 29, 12)) == (utc(2032, 2, 29, 12), "FREQ=YEARLY")


def test_count_ends_the_series() -> None:
    assert following("FREQ=DAILY;COUNT=3", utc(2030, 1, 1, 9)) == (
        utc(2030, 1, 2, 9),
        "FREQ=DAILY;COUNT=2",
    )
    assert following("FREQ=DAILY;COUNT=2", utc(2030, 1, 2, 9)) == (
        utc(2030, 1, 3, 9),
        "FREQ=DAILY;COUNT=1",
    )
    assert following("FREQ=DAILY;COUNT=1", utc(2030, 1, 3, 9)) is None


def test_until_ends_the_series() -> None:
    rule = "FREQ=DAILY;UNTIL=20300103T090000Z"
    assert following(rule, utc(2030, 1, 2, 9)) == (utc(2030, 1, 3, 9), rule)
    assert following(rule, utc(2030, 1, 3, 9)) is None
    whole_day = "FREQ=DAILY;UNTIL=20300103"
    assert following(whole_day, utc(2030, 1, 2, 23, 30)) == (utc(2030, 1, 3, 23, 30), whole_day)
    assert following(whole_day, utc(2030, 1, 3, 23, 30)) is None


@pytest.mark.parametrize(
    ("zone", "before_change"),
    [("Europe/Berlin", utc(2030, 3, 30, 9)), ("America/New_York", utc(2030, 3, 9, 9))],
)
def test_every_day_at_09_00_utc_stays_09_00_utc_across_a_dst_change(
    zone: str, before_change: datetime
) -> None:
    """Documented behaviour: rules run in UTC, so the local time moves by the DST hour."""
    due, local = before_change, ZoneInfo(zone)
    result = following("FREQ=DAILY", due)
    assert result is not None
    after_change = result[0]
    assert after_change == due + timedelta(days=1)
    assert (after_change.hour, after_change.minute) == (9, 0)
    assert after_change.astimezone(local).hour == due.astimezone(local).hour + 1


# --- through the API ------------------------------------------------------------------------


async def create(
    client: httpx.AsyncClient, signed_in: SignedIn, **fields: object
) -> dict[str, object]:
    response = await client.post(
        TASKS, json={"title": "Recurring", **fields}, headers=signed_in.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def complete(
    client: httpx.AsyncClient, signed_in: SignedIn, task: dict[str, object]
) -> httpx.Response:
    return await client.patch(
        f"{TASKS}/{task['id']}",
        json={"status": "completed", "version": task["version"]},
        headers=signed_in.headers,
    )


async def test_a_rule_needs_a_due_date_and_must_be_in_the_subset(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    no_due = await client.post(
        TASKS, json={"title": "Daily", "recurrence": "FREQ=DAILY"}, headers=alice.headers
    )
    assert_problem(no_due, 400, "invalid_recurrence")
    assert no_due.json()["errors"][0]["field"] == "recurrence"
    hourly = await client.post(
        TASKS,
        json={"title": "Hourly", "recurrence": "FREQ=HOURLY", "due_date": iso(in_days(1))},
        headers=alice.headers,
    )
    assert_problem(hourly, 400, "invalid_recurrence")
    task = await create(client, alice, recurrence="freq=weekly;byday=mo", due_date=iso(in_days(1)))
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=MO"

    clear_due = await client.patch(
        f"{TASKS}/{task['id']}", json={"due_date": None, "version": 1}, headers=alice.headers
    )
    assert_problem(clear_due, 400, "invalid_recurrence")
    plain = await create(client, alice)
    set_rule = await client.patch(
        f"{TASKS}/{plain['id']}",
        json={"recurrence": "FREQ=DAILY", "version": 1},
        headers=alice.headers,
    )
    assert_problem(set_rule, 400, "invalid_recurrence")
    both = await client.patch(
        f"{TASKS}/{plain['id']}",
        json={"recurrence": "FREQ=DAILY", "due_date": iso(in_days(2)), "version": 1},
        headers=alice.headers,
    )
    assert both.status_code == 200
    assert both.json()["recurrence"] == "FREQ=DAILY"
    ended = await client.patch(
        f"{TASKS}/{plain['id']}",
        json={"recurrence": None, "due_date": None, "version": 2},
        headers=alice.headers,
    )
    assert ended.status_code == 200
    assert (ended.json()["recurrence"], ended.json()["due_date"]) == (None, None)


async def test_completing_a_recurring_task_creates_the_next_one(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    due = (in_days(3)).replace(hour=9, minute=0, second=0, microsecond=0)
    home = await add_category(session, alice.user, "Home")
    task = await create(
        client,
        alice,
        title="Water the plants",
        description="All of them",
        priority="high",
        due_date=iso(due),
        remind_at=iso(due - timedelta(hours=1)),
        recurrence="FREQ=DAILY;COUNT=3",
    )
    assigned = await client.post(
        f"{TASKS}/{task['id']}/categories/{home.id}", headers=alice.headers
    )
    task = assigned.json()

    done = await complete(client, alice, task)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "completed"
    assert body["completed_at"] is not None
    assert body["recurrence"] == "FREQ=DAILY;COUNT=3"
    next_id = body["next_occurrence_id"]
    assert next_id is not None

    following_task = (await client.get(f"{TASKS}/{next_id}", headers=alice.headers)).json()
    assert following_task["title"] == "Water the plants"
    assert following_task["description"] == "All of them"
    assert following_task["priority"] == "high"
    assert following_task["status"] == "pending"
    assert following_task["version"] == 1
    assert following_task["completed_at"] is None
    assert following_task["next_occurrence_id"] is None
    assert following_task["recurrence"] == "FREQ=DAILY;COUNT=2"
    assert datetime.fromisoformat(following_task["due_date"]) == due + timedelta(days=1)
    assert datetime.fromisoformat(following_task["remind_at"]) == due + timedelta(hours=23)
    assert [c["name"] for c in following_task["categories"]] == ["Home"]

    third = (await complete(client, alice, following_task)).json()
    last = (
        await client.get(f"{TASKS}/{third['next_occurrence_id']}", headers=alice.headers)
    ).json()
    assert last["recurrence"] == "FREQ=DAILY;COUNT=1"
    assert datetime.fromisoformat(last["due_date"]) == due + timedelta(days=2)
    final = (await complete(client, alice, last)).json()
    assert final["next_occurrence_id"] is None, "COUNT=1: the series has ended"
    rows = list(await session.scalars(select(Task).where(Task.user_id == alice.user.id)))
    await session.commit()
    assert len(rows) == 3


async def test_a_series_with_until_ends_and_reopening_does_not_repeat(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    due = in_days(1).replace(microsecond=0)
    until = (due + timedelta(days=7)).strftime("%Y%m%dT%H%M%SZ")
    task = await create(client, alice, due_date=iso(due), recurrence=f"FREQ=WEEKLY;UNTIL={until}")
    first = (await complete(client, alice, task)).json()
    second_id = first["next_occurrence_id"]
    assert second_id is not None
    second = (await client.get(f"{TASKS}/{second_id}", headers=alice.headers)).json()
    assert datetime.fromisoformat(second["due_date"]) == due + timedelta(days=7)
    assert (await complete(client, alice, second)).json()["next_occurrence_id"] is None

    reopened = await client.patch(
        f"{TASKS}/{task['id']}",
        json={"status": "pending", "version": first["version"]},
        headers=alice.headers,
    )
    assert reopened.status_code == 200
    assert reopened.json()["completed_at"] is None
    assert reopened.json()["next_occurrence_id"] == second_id
    again = await complete(client, alice, reopened.json())
    assert again.json()["next_occurrence_id"] == second_id, "one next task per series step"
    rows = list(await session.scalars(select(Task.id).where(Task.user_id == alice.user.id)))
    await session.commit()
    assert len(rows) == 2


async def test_completed_at_is_set_kept_and_cleared_with_the_status(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    task = await create(client, alice)
    assert task["completed_at"] is None
    done = (await complete(client, alice, task)).json()
    completed_at = done["completed_at"]
    assert completed_at is not None
    renamed = await client.patch(
        f"{TASKS}/{task['id']}",
        json={"title": "Renamed", "status": "completed", "version": done["version"]},
        headers=alice.headers,
    )
    assert renamed.json()["completed_at"] == completed_at
    reopened = await client.patch(
        f"{TASKS}/{task['id']}",
        json={"status": "in_progress", "version": renamed.json()["version"]},
        headers=alice.headers,
    )
    assert reopened.json()["completed_at"] is None


async def test_two_completions_racing_create_one_next_task(
    app: FastAPI, session: AsyncSession, alice: SignedIn
) -> None:
    async with make_client(app) as first, make_client(app) as second:
        task = await create(first, alice, due_date=iso(in_days(1)), recurrence="FREQ=DAILY")
        answers = await asyncio.gather(complete(first, alice, task), complete(second, alice, task))
    assert sorted(answer.status_code for answer in answers) == [200, 409]
    [winner] = [answer for answer in answers if answer.status_code == 200]
    rows = list(
        await session.scalars(
            select(Task).where(Task.user_id == alice.user.id).order_by(Task.created_at)
        )
    )
    await session.commit()
    assert len(rows) == 2
    completed, following_task = rows
    assert completed.status is TaskStatus.COMPLETED
    assert completed.next_occurrence_id == following_task.id
    assert str(following_task.id) == winner.json()["next_occurrence_id"]
    assert await stored(session, uuid.UUID(str(task["id"]))) is not None
