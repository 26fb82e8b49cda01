"""Keyset pagination: every sort field and direction walks the same rows as page numbers."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from taskapi.core.pagination import encode_cursor
from taskapi.tasks.models import TaskPriority, TaskStatus
from tests.support.factories import SignedIn
from tests.support.problems import assert_problem
from tests.support.tasks import (
    TASKS,
    AddTask,
)

SORT_FIELDS = ["created_at", "updated_at", "due_date", "priority", "title", "status"]


@pytest.fixture
async def mixed_tasks(alice: SignedIn, add_task: AddTask) -> list[str]:
    """Tasks with ties on every sort key and some without a due date."""
    base = datetime(2031, 1, 1, tzinfo=UTC)
    ids = []
    for index in range(23):
        task = await add_task(
            alice.user,
            title=["alpha", "Beta", "beta", "Ärger"][index % 4] + f" {index % 3}",
            priority=list(TaskPriority)[index % 3],
            status=list(TaskStatus)[index % 3],
            due_date=None if index % 5 == 0 else base + timedelta(days=index % 4),
            created_at=base - timedelta(hours=index % 6),
            updated_at=base - timedelta(hours=index % 2),
        )
        ids.append(str(task.id))
    return ids


async def walk(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    seen: list[str] = []
    response = await client.get(TASKS, params={**params, "limit": 4}, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(item["id"] for item in body["items"])
        if body["next_cursor"] is None:
            return seen
        response = await client.get(
            TASKS, params={**params, "limit": 4, "cursor": body["next_cursor"]}, headers=headers
        )
        page = response.json()
        assert (page["total"], page["page"], page["pages"]) == (None, None, None)


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
@pytest.mark.parametrize("sort_by", SORT_FIELDS)
async def test_cursor_walk_matches_the_full_ordering(
    client: httpx.AsyncClient,
    alice: SignedIn,
    mixed_tasks: list[str],
    sort_by: str,
    sort_order: str,
) -> None:
    params = {"sort_by": sort_by, "sort_order": sort_order}
    everything = await client.get(TASKS, params={**params, "limit": 100}, headers=alice.headers)
    expected = [item["id"] for item in everything.json()["items"]]
    assert sorted(expected) == sorted(mixed_tasks)
    assert await walk(client, alice.headers, **params) == expected


async def test_cursor_respects_filters(
    client: httpx.AsyncClient, alice: SignedIn, mixed_tasks: list[str]
) -> None:
    params = {"priority": "high", "q": "beta"}
    everything = await client.get(TASKS, params={**params, "limit": 100}, headers=alice.headers)
    expected = [item["id"] for item in everything.json()["items"]]
    assert expected
    assert await walk(client, alice.headers, **params) == expected


async def test_first_page_offers_a_cursor_and_the_last_page_none(
    client: httpx.AsyncClient, alice: SignedIn, add_task: AddTask
) -> None:
    for index in range(3):
        await add_task(alice.user, title=f"task {index}")
    full = (await client.get(TASKS, params={"limit": 3}, headers=alice.headers)).json()
    assert full["next_cursor"] is None
    assert (full["total"], full["page"], full["pages"]) == (3, 1, 1)
    first = (await client.get(TASKS, params={"limit": 2}, headers=alice.headers)).json()
    assert first["next_cursor"] is not None
    second = (
        await client.get(
            TASKS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=alice.headers
        )
    ).json()
    assert len(second["items"]) == 1
    assert second["next_cursor"] is None


async def test_cursor_never_shows_another_users_tasks(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn, add_task: AddTask
) -> None:
    for index in range(3):
        await add_task(alice.user, title=f"alice {index}")
        await add_task(bob.user, title=f"bob {index}")
    cursor = (await client.get(TASKS, params={"limit": 1}, headers=alice.headers)).json()[
        "next_cursor"
    ]
    as_bob = await client.get(TASKS, params={"cursor": cursor}, headers=bob.headers)
    assert as_bob.status_code == 200
    assert {item["title"][:3] for item in as_bob.json()["items"]} <= {"bob"}


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        encode_cursor({"s": "title", "o": "desc", "k": "x", "i": "not-a-uuid"}),
        encode_cursor({"s": "created_at", "o": "desc", "k": "yesterday", "i": str(UUID0)})
        if (UUID0 := "00000000-0000-0000-0000-000000000000")
        else "",
        encode_cursor({"s": "created_at", "o": "asc", "k": "2030-01-01T00:00:00+00:00", "i": ""}),
        "WzEsMiwzXQ",
    ],
)
async def test_bad_cursor_is_400(client: httpx.AsyncClient, alice: SignedIn, cursor: str) -> None:
    response = await client.get(TASKS, params={"cursor": cursor}, headers=alice.headers)
    assert_problem(response, 400, "invalid_cursor")


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_forged_title_cursor_with_a_nul_is_400(
    client: httpx.AsyncClient, alice: SignedIn, add_task: AddTask, order: str
) -> None:
    """PostgreSQL's text cannot hold NUL: the driver failed the query with a 500."""
    await add_task(alice.user, title="any title")
    cursor = encode_cursor({"s": "title", "o": order, "k": "a\x00b", "i": str(uuid.uuid4())})
    response = await client.get(
        TASKS,
        params={"cursor": cursor, "sort_by": "title", "sort_order": order},
        headers=alice.headers,
    )
    assert_problem(response, 400, "invalid_cursor")


async def test_cursor_from_another_sort_is_400(
    client: httpx.AsyncClient, alice: SignedIn, add_task: AddTask
) -> None:
    for index in range(2):
        await add_task(alice.user, title=f"task {index}")
    cursor = (
        await client.get(TASKS, params={"limit": 1, "sort_by": "title"}, headers=alice.headers)
    ).json()["next_cursor"]
    response = await client.get(TASKS, params={"cursor": cursor}, headers=alice.headers)
    assert_problem(response, 400, "invalid_cursor")


async def test_cursor_and_page_together_is_400(client: httpx.AsyncClient, alice: SignedIn) -> None:
    cursor = encode_cursor({"s": "created_at", "o": "desc", "k": "2030-01-01T00:00:00+00:00"})
    response = await client.get(TASKS, params={"cursor": cursor, "page": 2}, headers=alice.headers)
    assert_problem(response, 400, "validation_error")
