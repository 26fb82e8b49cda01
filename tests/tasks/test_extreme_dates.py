"""Datetimes at the edges of what Python can hold: 400, never an OverflowError's 500.

Every datetime a client sends (due dates in bodies, due-date filters, the sort key inside a
cursor) must fall within the years 1 to 9998 once converted to UTC;
9999-12-31T23:59:59-01:00 is in the year 10000 in UTC, 0001-01-01T00:00:00+01:00 in the
year 0.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from taskapi.core.pagination import encode_cursor
from tests.support.factories import SignedIn
from tests.support.problems import assert_problem, field_errors
from tests.support.tasks import TASKS, AddTask

PAST_THE_END = ["9999-12-31T23:59:59-01:00", "9999-01-01T00:00:00Z", "9998-12-31T23:30:00-01:00"]
BEFORE_THE_START = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59+01:00"]
EXTREMES = PAST_THE_END + BEFORE_THE_START


@pytest.mark.parametrize("due_date", PAST_THE_END)
async def test_post_with_a_due_date_past_the_supported_years_is_400(
    client: httpx.AsyncClient, alice: SignedIn, due_date: str
) -> None:
    response = await client.post(
        TASKS, json={"title": "Far future", "due_date": due_date}, headers=alice.headers
    )
    assert field_errors(response) == {"due_date"}


@pytest.mark.parametrize("due_date", PAST_THE_END)
async def test_patch_with_a_due_date_past_the_supported_years_is_400(
    client: httpx.AsyncClient, alice: SignedIn, add_task: AddTask, due_date: str
) -> None:
    task = await add_task(alice.user)
    response = await client.patch(
        f"{TASKS}/{task.id}", json={"due_date": due_date, "version": 1}, headers=alice.headers
    )
    assert field_errors(response) == {"due_date"}


async def test_the_last_supported_moment_is_accepted(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    response = await client.post(
        TASKS,
        json={"title": "Far future", "due_date": "9998-12-31T23:59:59-00:00"},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["due_date"] == "9998-12-31T23:59:59Z"
    listed = await client.get(
        TASKS,
        params={"due_date_from": "0001-01-01T00:00:00Z", "due_date_to": "9998-12-31T23:59:59Z"},
        headers=alice.headers,
    )
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [response.json()["id"]]


@pytest.mark.parametrize("field", ["due_date_from", "due_date_to"])
@pytest.mark.parametrize("value", EXTREMES)
async def test_filter_outside_the_supported_years_is_400(
    client: httpx.AsyncClient, alice: SignedIn, field: str, value: str
) -> None:
    response = await client.get(TASKS, params={field: value}, headers=alice.headers)
    assert field_errors(response) == {field}


@pytest.mark.parametrize("sort_by", ["created_at", "updated_at", "due_date"])
@pytest.mark.parametrize("value", EXTREMES)
async def test_cursor_holding_a_date_outside_the_supported_years_is_invalid(
    client: httpx.AsyncClient, alice: SignedIn, sort_by: str, value: str
) -> None:
    cursor = encode_cursor({"s": sort_by, "o": "desc", "k": value, "i": str(uuid.uuid4())})
    response = await client.get(
        TASKS, params={"sort_by": sort_by, "cursor": cursor}, headers=alice.headers
    )
    assert_problem(response, 400, "invalid_cursor")


@pytest.mark.parametrize(
    ("due_date", "remind_at"),
    [
        pytest.param("9998-06-01T12:00:00Z", None, id="next-due-in-9999"),
        pytest.param("2030-06-01T12:00:00Z", "9998-06-01T12:00:00Z", id="next-reminder-in-9999"),
    ],
)
async def test_a_series_ends_where_its_next_task_would_leave_the_supported_years(
    client: httpx.AsyncClient, alice: SignedIn, due_date: str, remind_at: str | None
) -> None:
    """Completing a yearly task due (or reminding) in 9998 creates no task dated 9999,
    which no cursor or filter could then hold, and never the 500 of an overflow."""
    created = await client.post(
        TASKS,
        json={
            "title": "Every year",
            "due_date": due_date,
            "remind_at": remind_at,
            "recurrence": "FREQ=YEARLY",
        },
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    completed = await client.patch(
        f"{TASKS}/{created.json()['id']}",
        json={"status": "completed", "version": 1},
        headers=alice.headers,
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["next_occurrence_id"] is None
    listed = await client.get(TASKS, headers=alice.headers)
    assert [item["id"] for item in listed.json()["items"]] == [created.json()["id"]]
