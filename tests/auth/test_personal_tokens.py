"""Personal access tokens (§7.2): made, listed and deleted by a signed-in user, stored as a
hash, limited to their scopes on every route, ended by a password reset and account
deletion but not by logout-all or a password change."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import PersonalAccessToken
from taskapi.auth.personal_tokens import MAX_TOKENS_PER_USER
from taskapi.core.security import hash_token
from tests.support.apps import state_of
from tests.support.auth import (
    API,
    OTHER_PASSWORD,
    STRONG_PASSWORD,
    Mailbox,
    bearer,
    register,
    stored_user,
)
from tests.support.factories import SignedIn, sign_in
from tests.support.problems import assert_problem, field_errors

TOKENS = f"{API}/auth/tokens"
TOKEN_FIELDS = {"id", "name", "scopes", "created_at", "expires_at", "last_used_at"}
TOKEN_FORMAT = re.compile(r"^tapi_[A-Za-z0-9_-]{40,}$")
ALL_SCOPES = ["categories:read", "categories:write", "tasks:read", "tasks:write", "webhooks:manage"]


async def make_token(
    client: httpx.AsyncClient, headers: dict[str, str], scopes: list[str], **body: Any
) -> dict[str, Any]:
    response = await client.post(
        TOKENS, json={"name": "script", "scopes": scopes, **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def stored_tokens(session: AsyncSession, user_id: uuid.UUID) -> list[PersonalAccessToken]:
    rows = list(
        await session.scalars(
            select(PersonalAccessToken)
            .where(PersonalAccessToken.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    )
    await session.commit()
    return rows


async def test_a_new_token_is_shown_once_and_stored_as_its_hash(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        TOKENS,
        json={"name": "  Calendar sync  ", "scopes": ["tasks:write", "tasks:read", "tasks:read"]},
        headers=alice.headers,
    )

    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == TOKEN_FIELDS | {"token"}
    assert TOKEN_FORMAT.match(body["token"])
    assert body["name"] == "Calendar sync"
    assert body["scopes"] == ["tasks:read", "tasks:write"]
    assert body["expires_at"] is None
    assert body["last_used_at"] is None
    assert before <= datetime.fromisoformat(body["created_at"]) <= datetime.now(UTC)
    (row,) = await stored_tokens(session, alice.user.id)
    assert str(row.id) == body["id"]
    assert row.token_hash == hash_token(body["token"])
    stored = {
        column.key: getattr(row, column.key) for column in PersonalAccessToken.__mapper__.columns
    }
    assert body["token"] not in repr(stored)

    listed = await client.get(TOKENS, headers=alice.headers)
    assert listed.status_code == 200
    assert listed.json() == {"items": [{k: v for k, v in body.items() if k != "token"}]}


async def test_two_tokens_differ_and_are_listed_newest_first(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn
) -> None:
    first = await make_token(client, alice.headers, ["tasks:read"], name="first")
    second = await make_token(client, alice.headers, ["tasks:read"], name="second")
    await make_token(client, bob.headers, ["tasks:read"], name="bob's")
    assert first["token"] != second["token"]
    listed = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert [item["name"] for item in listed] == ["second", "first"]
    for item in listed:
        assert set(item) == TOKEN_FIELDS


async def test_expiry_in_days_or_never(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    dated = await make_token(client, alice.headers, ["tasks:read"], expires_in_days=90)
    never = await make_token(client, alice.headers, ["tasks:read"], expires_in_days=None)
    created = datetime.fromisoformat(dated["created_at"])
    assert datetime.fromisoformat(dated["expires_at"]) == created + timedelta(days=90)
    assert never["expires_at"] is None

    await session.execute(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.id == uuid.UUID(dated["id"]))
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    expired = await client.get(f"{API}/tasks", headers=bearer(dated["token"]))
    assert_problem(expired, 401, "not_authenticated")
    listed = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert [item["id"] for item in listed] == [never["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["tasks:delete"]}, "scopes.0"),
        ({"name": "x", "scopes": ["TASKS:READ"]}, "scopes.0"),
        ({"name": "x"}, "scopes"),
        ({"name": "", "scopes": ["tasks:read"]}, "name"),
        ({"name": "   ", "scopes": ["tasks:read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["tasks:read"]}, "name"),
        ({"scopes": ["tasks:read"]}, "name"),
        ({"name": "x", "scopes": ["tasks:read"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "scopes": ["tasks:read"], "expires_in_days": 366}, "expires_in_days"),
        ({"name": "x", "scopes": ["tasks:read"], "expires_in_days": "soon"}, "expires_in_days"),
    ],
)
async def test_invalid_bodies_are_400(
    client: httpx.AsyncClient, alice: SignedIn, body: dict[str, Any], field: str
) -> None:
    response = await client.post(TOKENS, json=body, headers=alice.headers)
    assert field in field_errors(response)


async def test_limits_of_name_and_expiry_are_accepted(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    longest = await make_token(
        client, alice.headers, ALL_SCOPES, name="x" * 100, expires_in_days=365
    )
    assert longest["name"] == "x" * 100
    assert longest["scopes"] == ALL_SCOPES
    shortest = await make_token(client, alice.headers, ["tasks:read"], name="x", expires_in_days=1)
    assert datetime.fromisoformat(shortest["expires_at"]) - datetime.fromisoformat(
        shortest["created_at"]
    ) == timedelta(days=1)


async def test_at_most_50_unexpired_tokens(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    session.add_all(
        PersonalAccessToken(
            user_id=alice.user.id,
            name=f"token {number}",
            token_hash=hash_token(f"tapi_{number}"),
            scopes=["tasks:read"],
        )
        for number in range(MAX_TOKENS_PER_USER)
    )
    await session.commit()

    refused = await client.post(
        TOKENS, json={"name": "one too many", "scopes": ["tasks:read"]}, headers=alice.headers
    )

    assert_problem(refused, 400, "too_many_tokens")
    assert len(await stored_tokens(session, alice.user.id)) == MAX_TOKENS_PER_USER
    await session.execute(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.token_hash == hash_token("tapi_0"))
        .values(expires_at=datetime.now(UTC) - timedelta(days=1))
    )
    await session.commit()
    await make_token(client, alice.headers, ["tasks:read"])
    stored = await stored_tokens(session, alice.user.id)
    assert len(stored) == MAX_TOKENS_PER_USER
    assert hash_token("tapi_0") not in {row.token_hash for row in stored}


async def test_a_deleted_token_is_refused_at_once(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn
) -> None:
    token = await make_token(client, alice.headers, ["tasks:read"])
    headers = bearer(token["token"])
    assert (await client.get(f"{API}/tasks", headers=headers)).status_code == 200

    assert_problem(
        await client.delete(f"{TOKENS}/{token['id']}", headers=bob.headers), 404, "not_found"
    )
    deleted = await client.delete(f"{TOKENS}/{token['id']}", headers=alice.headers)

    assert deleted.status_code == 204
    assert_problem(await client.get(f"{API}/tasks", headers=headers), 401, "not_authenticated")
    assert (await client.get(TOKENS, headers=alice.headers)).json() == {"items": []}
    assert_problem(
        await client.delete(f"{TOKENS}/{token['id']}", headers=alice.headers), 404, "not_found"
    )
    assert_problem(
        await client.delete(f"{TOKENS}/{uuid.uuid4()}", headers=alice.headers), 404, "not_found"
    )
    assert_problem(
        await client.delete(f"{TOKENS}/not-a-uuid", headers=alice.headers), 400, "validation_error"
    )


async def test_unknown_and_malformed_tokens_are_401(client: httpx.AsyncClient) -> None:
    for token in (b"tapi_" + b"x" * 43, b"tapi_", "tapi_ünïcödé".encode("latin-1")):
        response = await client.get(f"{API}/tasks", headers={b"Authorization": b"Bearer " + token})
        assert_problem(response, 401, "not_authenticated")


def assert_insufficient_scope(response: httpx.Response, scope: str | None) -> None:
    body = assert_problem(response, 403, "insufficient_scope")
    assert body["required_scope"] == scope
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope"')
    if scope is not None:
        assert f'scope="{scope}"' in challenge


async def test_a_read_only_task_token_reads_tasks_and_nothing_more(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    task = (await client.post(f"{API}/tasks", json={"title": "Mine"}, headers=alice.headers)).json()
    category = (
        await client.post(f"{API}/categories", json={"name": "Home"}, headers=alice.headers)
    ).json()
    headers = bearer((await make_token(client, alice.headers, ["tasks:read"]))["token"])

    listed = await client.get(f"{API}/tasks", headers=headers)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [task["id"]]
    assert (await client.get(f"{API}/tasks/{task['id']}", headers=headers)).json() == task

    writes = [
        client.post(f"{API}/tasks", json={"title": "Not allowed"}, headers=headers),
        client.patch(
            f"{API}/tasks/{task['id']}", json={"title": "Changed", "version": 1}, headers=headers
        ),
        client.delete(f"{API}/tasks/{task['id']}", headers=headers),
        client.post(f"{API}/tasks/{task['id']}/categories/{category['id']}", headers=headers),
    ]
    for write in writes:
        assert_insufficient_scope(await write, "tasks:write")
    assert_insufficient_scope(
        await client.get(f"{API}/categories", headers=headers), "categories:read"
    )
    assert_insufficient_scope(
        await client.get(f"{API}/categories/{category['id']}", headers=headers), "categories:read"
    )
    assert_insufficient_scope(
        await client.post(f"{API}/categories", json={"name": "Work"}, headers=headers),
        "categories:write",
    )
    again = await client.get(f"{API}/tasks/{task['id']}", headers=alice.headers)
    assert again.json() == task


@pytest.mark.parametrize("scopes", [["tasks:read"], ALL_SCOPES])
async def test_no_token_may_use_the_account_routes(
    client: httpx.AsyncClient, alice: SignedIn, scopes: list[str]
) -> None:
    token = await make_token(client, alice.headers, scopes)
    headers = bearer(token["token"])
    refused = [
        client.get(f"{API}/auth/sessions", headers=headers),
        client.delete(f"{API}/auth/sessions/{uuid.uuid4()}", headers=headers),
        client.post(TOKENS, json={"name": "another", "scopes": ["tasks:read"]}, headers=headers),
        client.get(TOKENS, headers=headers),
        client.delete(f"{TOKENS}/{token['id']}", headers=headers),
        client.get(f"{API}/users/me", headers=headers),
        client.patch(f"{API}/users/me", json={"full_name": "Changed"}, headers=headers),
        client.post(
            f"{API}/users/me/password",
            json={"current_password": STRONG_PASSWORD, "new_password": OTHER_PASSWORD},
            headers=headers,
        ),
        client.delete(f"{API}/users/me", headers=headers),
        client.post(f"{API}/auth/logout", json={"refresh_token": "0" * 64}, headers=headers),
        client.post(f"{API}/auth/logout-all", headers=headers),
    ]
    for request in refused:
        assert_insufficient_scope(await request, None)
    assert len((await client.get(TOKENS, headers=alice.headers)).json()["items"]) == 1
    assert (await client.get(f"{API}/users/me", headers=alice.headers)).status_code == 200


async def test_each_scope_opens_its_routes(client: httpx.AsyncClient, alice: SignedIn) -> None:
    writer = bearer((await make_token(client, alice.headers, ["tasks:write"]))["token"])
    created = await client.post(f"{API}/tasks", json={"title": "By token"}, headers=writer)
    assert created.status_code == 201
    categories = bearer(
        (await make_token(client, alice.headers, ["categories:read", "categories:write"]))["token"]
    )
    category = await client.post(f"{API}/categories", json={"name": "Tokens"}, headers=categories)
    assert category.status_code == 201
    assert (await client.get(f"{API}/categories", headers=categories)).json()["total"] == 1
    assigned = await client.post(
        f"{API}/tasks/{created.json()['id']}/categories/{category.json()['id']}", headers=writer
    )
    assert assigned.status_code == 200
    assert_insufficient_scope(await client.get(f"{API}/tasks", headers=writer), "tasks:read")


async def test_webhooks_need_their_own_scope(client: httpx.AsyncClient, alice: SignedIn) -> None:
    tasks_only = bearer((await make_token(client, alice.headers, ALL_SCOPES[:-1]))["token"])
    manager = bearer((await make_token(client, alice.headers, ["webhooks:manage"]))["token"])
    assert_insufficient_scope(
        await client.get(f"{API}/webhooks", headers=tasks_only), "webhooks:manage"
    )
    listed = await client.get(f"{API}/webhooks", headers=manager)
    assert listed.status_code == 200
    assert listed.json()["items"] == []
    assert_insufficient_scope(await client.get(f"{API}/tasks", headers=manager), "tasks:read")


async def test_an_unverified_accounts_token_cannot_work_yet(
    client: httpx.AsyncClient, session: AsyncSession, settings: Any
) -> None:
    unverified = await sign_in(session, settings, is_active=False)
    token = await make_token(client, unverified.headers, ["tasks:read"])
    refused = await client.get(f"{API}/tasks", headers=bearer(token["token"]))
    assert_problem(refused, 403, "email_not_verified")


@pytest.fixture
def token_use_writes(app: FastAPI) -> Iterator[list[str]]:
    """Every UPDATE of personal_access_tokens the database receives."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE PERSONAL_ACCESS_TOKENS"):
            statements.append(statement)

    engine = state_of(app)["engine"].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield statements
    event.remove(engine, "before_cursor_execute", record)


async def test_last_use_is_written_at_most_once_a_minute(
    client: httpx.AsyncClient,
    session: AsyncSession,
    alice: SignedIn,
    token_use_writes: list[str],
) -> None:
    token = await make_token(client, alice.headers, ["tasks:read"])
    headers = bearer(token["token"])

    for _ in range(5):
        assert (await client.get(f"{API}/tasks", headers=headers)).status_code == 200

    assert len(token_use_writes) == 1
    (row,) = await stored_tokens(session, alice.user.id)
    assert row.last_used_at is not None
    first_use = row.last_used_at
    listed = (await client.get(TOKENS, headers=alice.headers)).json()["items"]
    assert datetime.fromisoformat(listed[0]["last_used_at"]) == first_use

    a_minute_ago = first_use - timedelta(seconds=61)
    await session.execute(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.id == row.id)
        .values(last_used_at=a_minute_ago)
    )
    await session.commit()
    token_use_writes.clear()
    assert (await client.get(f"{API}/tasks", headers=headers)).status_code == 200
    assert (await client.get(f"{API}/tasks", headers=headers)).status_code == 200
    assert len(token_use_writes) == 1
    (row,) = await stored_tokens(session, alice.user.id)
    assert row.last_used_at is not None
    assert row.last_used_at > a_minute_ago + timedelta(seconds=60)


async def test_a_token_is_looked_up_once_per_request(
    app: FastAPI, client: httpx.AsyncClient, alice: SignedIn
) -> None:
    """An Idempotency-Key route takes both the caller and the route's scoped user: one
    authentication serves both."""
    token = await make_token(client, alice.headers, ["tasks:write"])
    look_ups: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if (
            statement.lstrip().upper().startswith("SELECT")
            and "personal_access_tokens" in statement
        ):
            look_ups.append(statement)

    engine = state_of(app)["engine"].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        created = await client.post(
            f"{API}/tasks",
            json={"title": "Once"},
            headers={**bearer(token["token"]), "Idempotency-Key": "once-1"},
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "Once"
    assert len(look_ups) == 1, look_ups


async def test_logout_all_and_a_password_change_leave_tokens_alone(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    signed_in = bearer(registered["access_token"])
    token = bearer((await make_token(client, signed_in, ["tasks:read"]))["token"])
    user = await stored_user(session, "ada@example.com")
    assert user is not None
    await session.execute(update(type(user)).where(type(user).id == user.id).values(is_active=True))
    await session.commit()

    assert (await client.post(f"{API}/auth/logout-all", headers=signed_in)).status_code == 204
    assert (await client.get(f"{API}/tasks", headers=token)).status_code == 200

    login = await client.post(
        f"{API}/auth/login", json={"email": "ada@example.com", "password": STRONG_PASSWORD}
    )
    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": STRONG_PASSWORD, "new_password": OTHER_PASSWORD},
        headers=bearer(login.json()["access_token"]),
    )
    assert changed.status_code == 204
    assert (await client.get(f"{API}/tasks", headers=token)).status_code == 200
    assert len(await stored_tokens(session, user.id)) == 1


async def test_a_password_reset_ends_every_token(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    registered = await register(client)
    signed_in = bearer(registered["access_token"])
    tokens = [
        bearer((await make_token(client, signed_in, scopes))["token"])
        for scopes in (["tasks:read"], ALL_SCOPES)
    ]
    assert (
        await client.post(f"{API}/auth/forgot-password", json={"email": "ada@example.com"})
    ).status_code == 202

    reset = await client.post(
        f"{API}/auth/reset-password",
        json={
            "token": await mailbox.token("ada@example.com", "reset-password"),
            "new_password": OTHER_PASSWORD,
        },
    )

    assert reset.status_code == 204
    for headers in tokens:
        assert_problem(await client.get(f"{API}/tasks", headers=headers), 401, "not_authenticated")
    user = await stored_user(session, "ada@example.com")
    assert user is not None
    assert await stored_tokens(session, user.id) == []


async def test_deleting_the_account_ends_every_token(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    token = bearer((await make_token(client, alice.headers, ALL_SCOPES))["token"])
    assert (await client.get(f"{API}/tasks", headers=token)).status_code == 200
    assert (await client.delete(f"{API}/users/me", headers=alice.headers)).status_code == 204
    assert_problem(await client.get(f"{API}/tasks", headers=token), 401, "not_authenticated")
    assert await stored_tokens(session, alice.user.id) == []
