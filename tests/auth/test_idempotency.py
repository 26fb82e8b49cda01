"""Idempotency-Key (§7.3) on POST /tasks, POST /categories, the category assignment and the
restore from the trash: a repeat gets the first answer byte for byte and writes nothing;
another request with the key is 422; a repeat while the first runs is 409; 2xx and 4xx are
kept, 5xx are not."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import IdempotencyRecord
from taskapi.categories.models import Category
from taskapi.tasks import service as tasks_service
from taskapi.tasks.models import Task
from taskapi.tasks.schemas import TaskRead
from tests.support.auth import API, bearer
from tests.support.backends import POSTGRES_URL
from tests.support.factories import SignedIn
from tests.support.problems import assert_problem, field_errors

TASKS = f"{API}/tasks"
CATEGORIES = f"{API}/categories"
REPLAYED = "idempotent-replayed"


def keyed(signed_in: SignedIn, key: str) -> dict[str, str]:
    return {**signed_in.headers, "Idempotency-Key": key}


async def count(session: AsyncSession, model: Any, **where: Any) -> int:
    statement = select(func.count()).select_from(model)
    for column, value in where.items():
        statement = statement.where(getattr(model, column) == value)
    total = await session.scalar(statement)
    await session.commit()
    return total or 0


async def test_a_repeat_gets_the_first_answer_byte_for_byte_and_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    headers = keyed(alice, "create-milk-1")
    first = await client.post(TASKS, json={"title": "Buy milk"}, headers=headers)
    assert first.status_code == 201
    assert REPLAYED not in first.headers

    again = await client.post(TASKS, json={"title": "Buy milk"}, headers=headers)

    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers[REPLAYED] == "true"
    for header in ("content-type", "location", "etag"):
        assert again.headers[header] == first.headers[header]
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert again.headers["cache-control"] == "no-store"
    assert await count(session, Task, user_id=alice.user.id) == 1
    (record,) = (
        await session.scalars(
            select(IdempotencyRecord).where(IdempotencyRecord.key == "create-milk-1")
        )
    ).all()
    await session.commit()
    assert (record.caller_id, record.user_id, record.status_code) == (
        alice.user.id,
        alice.user.id,
        201,
    )
    assert record.body == first.content
    assert record.expires_at - record.created_at == timedelta(hours=24)


async def test_without_a_key_every_post_creates(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    for _ in range(2):
        response = await client.post(TASKS, json={"title": "Buy milk"}, headers=alice.headers)
        assert response.status_code == 201
        assert REPLAYED not in response.headers
    assert await count(session, Task, user_id=alice.user.id) == 2
    assert await count(session, IdempotencyRecord) == 0


async def test_the_key_with_another_body_or_path_is_422_and_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    headers = keyed(alice, "k-1")
    assert (
        await client.post(TASKS, json={"title": "Buy milk"}, headers=headers)
    ).status_code == 201

    other_body = await client.post(TASKS, json={"title": "Buy bread"}, headers=headers)
    same_json_other_bytes = await client.post(
        TASKS,
        content=b'{"title":  "Buy milk"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    other_path = await client.post(CATEGORIES, json={"name": "Buy milk"}, headers=headers)

    for response in (other_body, same_json_other_bytes, other_path):
        assert_problem(response, 422, "idempotency_key_reused")
        assert REPLAYED not in response.headers
    assert await count(session, Task, user_id=alice.user.id) == 1
    assert await count(session, Category, user_id=alice.user.id) == 0


async def test_keys_of_two_users_do_not_collide(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, bob: SignedIn
) -> None:
    for signed_in in (alice, bob):
        response = await client.post(
            TASKS, json={"title": "Same key"}, headers=keyed(signed_in, "shared")
        )
        assert response.status_code == 201
        assert REPLAYED not in response.headers
    for signed_in in (alice, bob):
        assert await count(session, Task, user_id=signed_in.user.id) == 1
    other_body = await client.post(TASKS, json={"title": "Other"}, headers=keyed(bob, "shared"))
    assert_problem(other_body, 422, "idempotency_key_reused")


async def test_a_personal_access_token_is_a_caller_of_its_own(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = await client.post(
        f"{API}/auth/tokens",
        json={"name": "script", "scopes": ["tasks:write"]},
        headers=alice.headers,
    )
    token = {**bearer(created.json()["token"]), "Idempotency-Key": "nightly"}
    by_token = await client.post(TASKS, json={"title": "Nightly"}, headers=token)
    by_session = await client.post(
        TASKS, json={"title": "Nightly"}, headers=keyed(alice, "nightly")
    )
    assert (by_token.status_code, by_session.status_code) == (201, 201)
    assert REPLAYED not in by_session.headers
    replayed = await client.post(TASKS, json={"title": "Nightly"}, headers=token)
    assert replayed.headers[REPLAYED] == "true"
    assert replayed.content == by_token.content
    assert await count(session, Task, user_id=alice.user.id) == 2
    assert await count(session, IdempotencyRecord, caller_id=uuid.UUID(created.json()["id"])) == 1


async def test_a_4xx_is_kept_and_replayed_with_its_first_request_id(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = (await client.post(TASKS, json={"title": "Sort me"}, headers=alice.headers)).json()
    missing = uuid.uuid4()
    path = f"{TASKS}/{task['id']}/categories/{missing}"
    headers = keyed(alice, "assign-1")
    first = await client.post(path, headers=headers)
    assert_problem(first, 404, "not_found")

    again = await client.post(path, headers=headers)

    assert again.status_code == 404
    assert again.content == first.content
    assert again.json()["request_id"] == first.headers["x-request-id"]
    assert again.headers[REPLAYED] == "true"
    invalid = {"title": "ab"}
    rejected = await client.post(TASKS, json=invalid, headers=keyed(alice, "invalid-1"))
    assert "title" in field_errors(rejected)
    replayed = await client.post(TASKS, json=invalid, headers=keyed(alice, "invalid-1"))
    assert (replayed.status_code, replayed.content) == (400, rejected.content)
    assert replayed.headers[REPLAYED] == "true"
    assert await count(session, Task, user_id=alice.user.id) == 1


async def test_a_4xx_keeps_nothing_the_request_wrote_before_it_failed(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = (await client.post(TASKS, json={"title": "Sort me"}, headers=alice.headers)).json()
    category = (await client.post(CATEGORIES, json={"name": "Home"}, headers=alice.headers)).json()
    path = f"{TASKS}/{task['id']}/categories/{category['id']}"
    assert (await client.post(path, headers=alice.headers)).status_code == 200

    conflict = await client.post(path, headers=keyed(alice, "assign-twice"))

    assert_problem(conflict, 409, "category_already_assigned")
    read = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert read.json()["version"] == 2
    assert await count(session, IdempotencyRecord, key="assign-twice") == 1


async def test_the_assignment_is_replayed_without_bumping_the_version_again(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    task = (await client.post(TASKS, json={"title": "Sort me"}, headers=alice.headers)).json()
    category = (await client.post(CATEGORIES, json={"name": "Home"}, headers=alice.headers)).json()
    path = f"{TASKS}/{task['id']}/categories/{category['id']}"
    first = await client.post(path, headers=keyed(alice, "assign-home"))
    again = await client.post(path, headers=keyed(alice, "assign-home"))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"] == '"2"'
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json()["version"] == 2


async def test_a_restore_is_replayed_and_its_answer_stays_that_of_the_first(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    """A retried restore answers the task as the first restore did, not 404 (it is no longer
    in the trash), and does not bump the version again."""
    task = (await client.post(TASKS, json={"title": "Undo me"}, headers=alice.headers)).json()
    assert (await client.delete(f"{TASKS}/{task['id']}", headers=alice.headers)).status_code == 204
    path = f"{TASKS}/{task['id']}/restore"
    first = await client.post(path, headers=keyed(alice, "restore-undo"))
    again = await client.post(path, headers=keyed(alice, "restore-undo"))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.content == first.content
    assert again.headers[REPLAYED] == "true"
    assert again.headers["etag"] == first.headers["etag"] == '"2"'
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json()["version"] == 2
    unkeyed = await client.post(path, headers=alice.headers)
    assert_problem(unkeyed, 404, "not_found")


async def test_categories_take_a_key_too(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    headers = keyed(alice, "category-work")
    first = await client.post(CATEGORIES, json={"name": "Work"}, headers=headers)
    again = await client.post(CATEGORIES, json={"name": "Work"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers[REPLAYED] == "true"
    assert await count(session, Category, user_id=alice.user.id) == 1


async def test_a_5xx_is_not_kept_and_frees_the_key(
    client: httpx.AsyncClient,
    session: AsyncSession,
    alice: SignedIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_task = tasks_service.create_task
    calls = 0

    async def fail_once(**kwargs: Any) -> TaskRead:
        nonlocal calls
        calls += 1
        task = await create_task(**kwargs)
        if calls == 1:
            raise RuntimeError("the disk is on fire")
        return task

    monkeypatch.setattr(tasks_service, "create_task", fail_once)
    headers = keyed(alice, "flaky")
    failed = await client.post(TASKS, json={"title": "Retry me"}, headers=headers)
    assert_problem(failed, 500, "internal_error")
    assert await count(session, Task, user_id=alice.user.id) == 0
    assert await count(session, IdempotencyRecord) == 0

    retried = await client.post(TASKS, json={"title": "Retry me"}, headers=headers)

    assert retried.status_code == 201
    assert REPLAYED not in retried.headers
    assert await count(session, Task, user_id=alice.user.id) == 1


@pytest.mark.parametrize(
    "key",
    [b"", b"x" * 256, "clé".encode("latin-1"), b"tab\there", b" leading", b"trailing "],
)
async def test_a_key_that_is_not_1_to_255_printable_ascii_is_400(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, key: bytes
) -> None:
    headers = [(name.encode(), value.encode()) for name, value in alice.headers.items()]
    response = await client.post(
        TASKS, json={"title": "Buy milk"}, headers=[*headers, (b"Idempotency-Key", key)]
    )
    assert "Idempotency-Key" in field_errors(response)
    assert await count(session, Task, user_id=alice.user.id) == 0


async def test_the_longest_and_odd_keys_are_fine(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    for key in ("x" * 255, "~", '"8e03978e-40d5-43e8-bc93-6894a57f9324"', "a b!{}"):
        first = await client.post(TASKS, json={"title": "Keyed"}, headers=keyed(alice, key))
        again = await client.post(TASKS, json={"title": "Keyed"}, headers=keyed(alice, key))
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers[REPLAYED] == "true"


async def test_an_expired_key_is_new_again(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    headers = keyed(alice, "yesterday")
    assert (await client.post(TASKS, json={"title": "Old"}, headers=headers)).status_code == 201
    await session.execute(
        update(IdempotencyRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()

    fresh = await client.post(TASKS, json={"title": "New"}, headers=headers)

    assert fresh.status_code == 201
    assert REPLAYED not in fresh.headers
    assert fresh.json()["title"] == "New"
    assert await count(session, IdempotencyRecord, key="yesterday") == 1


async def test_storing_a_key_drops_the_callers_expired_ones(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, bob: SignedIn
) -> None:
    for signed_in, key in ((alice, "old-1"), (alice, "old-2"), (bob, "bobs")):
        response = await client.post(TASKS, json={"title": "Old"}, headers=keyed(signed_in, key))
        assert response.status_code == 201
    await session.execute(
        update(IdempotencyRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    assert (
        await client.post(TASKS, json={"title": "New"}, headers=keyed(alice, "new"))
    ).status_code == 201
    keys = set((await session.scalars(select(IdempotencyRecord.key))).all())
    await session.commit()
    assert keys == {"new", "bobs"}


async def test_a_refused_caller_leaves_no_record(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = await client.post(
        f"{API}/auth/tokens",
        json={"name": "reader", "scopes": ["tasks:read"]},
        headers=alice.headers,
    )
    headers = {**bearer(created.json()["token"]), "Idempotency-Key": "not-allowed"}
    refused = await client.post(TASKS, json={"title": "Nope"}, headers=headers)
    assert_problem(refused, 403, "insufficient_scope")
    anonymous = await client.post(
        TASKS, json={"title": "Nope"}, headers={"Idempotency-Key": "not-allowed"}
    )
    assert_problem(anonymous, 401, "not_authenticated")
    assert await count(session, IdempotencyRecord) == 0


async def test_deleting_the_account_deletes_its_keys(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    assert (
        await client.post(TASKS, json={"title": "Mine"}, headers=keyed(alice, "k"))
    ).status_code == 201
    assert (await client.delete(f"{API}/users/me", headers=alice.headers)).status_code == 204
    assert await count(session, IdempotencyRecord) == 0


CONCURRENT_REPEATS = 10


async def test_the_same_key_fired_10_times_at_once_creates_one_task(
    client: httpx.AsyncClient,
    session: AsyncSession,
    alice: SignedIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first request holds its key until the other nine have been answered (PostgreSQL:
    409 in progress, each at once) or, on SQLite, where the nine wait for the write lock,
    for a moment; then it commits, and the nine are answered from its record."""
    create_task = tasks_service.create_task
    answered = 0
    others_answered = asyncio.Event()

    async def slow_create(**kwargs: Any) -> TaskRead:
        if POSTGRES_URL is not None:
            await asyncio.wait_for(others_answered.wait(), timeout=30)
        else:
            await asyncio.sleep(0.5)
        return await create_task(**kwargs)

    monkeypatch.setattr(tasks_service, "create_task", slow_create)
    headers = keyed(alice, "fired-ten-times")

    async def fire() -> httpx.Response:
        nonlocal answered
        response = await client.post(TASKS, json={"title": "Only once"}, headers=headers)
        answered += 1
        if answered == CONCURRENT_REPEATS - 1:
            others_answered.set()
        return response

    responses = await asyncio.gather(*(fire() for _ in range(CONCURRENT_REPEATS)))

    created = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(created) == 1
    rest = [r for r in responses if r is not created[0]]
    if POSTGRES_URL is not None:
        for response in rest:
            body = assert_problem(response, 409, "idempotency_key_in_progress")
            assert response.headers["retry-after"] == "1"
            assert body["detail"]
    else:
        for response in rest:
            assert (response.status_code, response.content) == (201, created[0].content)
            assert response.headers[REPLAYED] == "true"
    assert await count(session, Task, user_id=alice.user.id) == 1
    after = await client.post(TASKS, json={"title": "Only once"}, headers=headers)
    assert (after.status_code, after.content) == (201, created[0].content)
    assert after.headers[REPLAYED] == "true"
