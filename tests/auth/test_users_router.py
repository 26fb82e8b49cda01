"""/users/me over HTTP, with what each call stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import RefreshToken, User
from taskapi.categories.models import Category
from taskapi.core.config import Settings
from taskapi.tasks.models import Task, task_categories
from tests.support.auth import (
    API,
    OTHER_PASSWORD,
    STRONG_PASSWORD,
    USER_FIELDS,
    bearer,
    login,
    register,
    stored_password_hash,
    stored_refresh_tokens,
    stored_token,
    stored_user,
)
from tests.support.factories import sign_in
from tests.support.problems import assert_problem, field_errors

EMAIL = "ada@example.com"


async def test_read_me(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    signed_in = await sign_in(session, settings, is_active=False, email=EMAIL)
    response = await client.get(f"{API}/users/me", headers=signed_in.headers)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["id"] == str(signed_in.user.id)
    assert body["email"] == EMAIL
    assert body["full_name"] == signed_in.user.full_name
    assert body["is_active"] is False


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}],
)
async def test_me_needs_a_valid_bearer_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(f"{API}/users/me", headers=headers)
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refresh_token_is_not_a_bearer_token(client: httpx.AsyncClient) -> None:
    registered = await register(client)
    response = await client.get(f"{API}/users/me", headers=bearer(registered["refresh_token"]))
    assert_problem(response, 401, "not_authenticated")


async def test_access_token_in_the_query_string_is_ignored(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    signed_in = await sign_in(session, settings)
    token = signed_in.headers["Authorization"].removeprefix("Bearer ")
    response = await client.get(f"{API}/users/me", params={"access_token": token, "token": token})
    assert_problem(response, 401, "not_authenticated")


async def test_update_me_trims_and_stores_the_name(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    signed_in = await sign_in(session, settings, email=EMAIL)
    created_updated_at = signed_in.user.updated_at
    response = await client.patch(
        f"{API}/users/me", json={"full_name": "  Augusta Ada King  "}, headers=signed_in.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["full_name"] == "Augusta Ada King"
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.full_name == "Augusta Ada King"
    assert datetime.fromisoformat(body["updated_at"]) == user.updated_at
    assert user.updated_at > created_updated_at


async def test_update_me_without_fields_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    signed_in = await sign_in(session, settings, email=EMAIL)
    response = await client.patch(
        f"{API}/users/me", json={"email": "other@example.com"}, headers=signed_in.headers
    )
    assert response.status_code == 200
    assert response.json()["full_name"] == "Ada Lovelace"
    assert response.json()["email"] == EMAIL
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.full_name == "Ada Lovelace"


@pytest.mark.parametrize("full_name", [None, "", "   ", "x" * 201, 42, "Nul\x00byte"])
async def test_update_me_bad_name_is_400(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, full_name: object
) -> None:
    signed_in = await sign_in(session, settings, email=EMAIL)
    response = await client.patch(
        f"{API}/users/me", json={"full_name": full_name}, headers=signed_in.headers
    )
    assert field_errors(response) == {"full_name"}
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.full_name == "Ada Lovelace"


async def test_change_password_keeps_this_session_and_ends_the_others(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    mine = await register(client)
    other = (await login(client)).json()
    old_hash = await stored_password_hash(session, EMAIL)

    response = await client.post(
        f"{API}/users/me/password",
        json={"current_password": STRONG_PASSWORD, "new_password": OTHER_PASSWORD},
        headers=bearer(mine["access_token"]),
    )
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"

    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.password_hash != old_hash
    assert user.password_hash.startswith("$argon2id$")
    assert user.tokens_valid_after is not None
    assert (await stored_token(session, mine["refresh_token"])).revoked_at is None
    assert (await stored_token(session, other["refresh_token"])).revoked_at is not None

    # Every access token issued before the change is refused, the caller's included ...
    for access in (mine["access_token"], other["access_token"]):
        me = await client.get(f"{API}/users/me", headers=bearer(access))
        assert_problem(me, 401, "not_authenticated")
    # ... but the caller's session goes on through its refresh token; the other one is over.
    assert_problem(
        await client.post(f"{API}/auth/refresh", json={"refresh_token": other["refresh_token"]}),
        401,
        "invalid_refresh_token",
    )
    renewed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": mine["refresh_token"]}
    )
    assert renewed.status_code == 200
    me = await client.get(f"{API}/users/me", headers=bearer(renewed.json()["access_token"]))
    assert me.status_code == 200

    assert_problem(await login(client), 401, "invalid_credentials")
    assert (await login(client, password=OTHER_PASSWORD)).status_code == 200


async def test_change_password_with_the_wrong_current_one_is_400_and_counts_as_a_failed_login(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    mine = await register(client)
    other = (await login(client)).json()
    before = await stored_user(session, EMAIL)
    assert before is not None

    response = await client.post(
        f"{API}/users/me/password",
        json={"current_password": "Wr0ng!Passw0rd", "new_password": OTHER_PASSWORD},
        headers=bearer(mine["access_token"]),
    )
    body = assert_problem(response, 400, "incorrect_password")
    assert [error["field"] for error in body["errors"]] == ["current_password"]

    after = await stored_user(session, EMAIL)
    assert after is not None
    assert after.password_hash == before.password_hash
    assert after.tokens_valid_after is None
    assert after.failed_login_attempts == 1
    assert after.locked_until is None
    assert (await stored_token(session, other["refresh_token"])).revoked_at is None
    me = await client.get(f"{API}/users/me", headers=bearer(mine["access_token"]))
    assert me.status_code == 200


async def test_wrong_current_passwords_lock_the_account_like_failed_logins(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Issue 17: with a stolen access token, password change was an unlimited oracle for
    the password. Its failures count with the sign-in's (two here, three there); the fifth
    locks, and while locked even the right current password changes nothing."""
    mine = await register(client)
    wrong_logins = [await login(client, password="Wr0ng!Passw0rd") for _ in range(2)]
    assert [answer.status_code for answer in wrong_logins] == [401, 401]

    def change(current: str) -> Any:
        return client.post(
            f"{API}/users/me/password",
            json={"current_password": current, "new_password": OTHER_PASSWORD},
            headers=bearer(mine["access_token"]),
        )

    wrong_changes = [await change(f"Wr0ng!Passw0rd{n}") for n in range(3)]
    assert [answer.status_code for answer in wrong_changes] == [400, 400, 403]
    locked = assert_problem(wrong_changes[-1], 403, "account_locked")
    right_while_locked = await change(STRONG_PASSWORD)
    assert (
        assert_problem(right_while_locked, 403, "account_locked")["locked_until"]
        == (locked["locked_until"])
    )
    assert_problem(await login(client), 403, "account_locked")

    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.failed_login_attempts == 5
    assert user.locked_until == datetime.fromisoformat(locked["locked_until"])
    assert user.tokens_valid_after is None, "the password was never changed"
    assert await stored_password_hash(session, EMAIL) == user.password_hash


async def test_a_password_change_clears_earlier_failed_logins(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    mine = await register(client)
    assert (await login(client, password="Wr0ng!Passw0rd")).status_code == 401
    response = await client.post(
        f"{API}/users/me/password",
        json={"current_password": STRONG_PASSWORD, "new_password": OTHER_PASSWORD},
        headers=bearer(mine["access_token"]),
    )
    assert response.status_code == 204
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.failed_login_attempts == 0


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"current_password": STRONG_PASSWORD, "new_password": "weakpassword"}, {"new_password"}),
        ({"current_password": STRONG_PASSWORD}, {"new_password"}),
        ({"new_password": OTHER_PASSWORD}, {"current_password"}),
        ({"current_password": "x" * 129, "new_password": OTHER_PASSWORD}, {"current_password"}),
    ],
)
async def test_change_password_bad_input_is_400(
    client: httpx.AsyncClient,
    session: AsyncSession,
    payload: dict[str, str],
    fields: set[str],
) -> None:
    mine = await register(client)
    before = await stored_password_hash(session, EMAIL)
    response = await client.post(
        f"{API}/users/me/password", json=payload, headers=bearer(mine["access_token"])
    )
    assert field_errors(response) == fields
    assert await stored_password_hash(session, EMAIL) == before


async def _count(session: AsyncSession, statement: Select[int]) -> int:
    value = await session.scalar(statement)
    await session.commit()
    assert value is not None
    return value


async def test_delete_me_removes_the_account_and_everything_it_owns(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    mine = await register(client)
    theirs = await register(client, email="eve@example.com")
    my_id = uuid.UUID(mine["user"]["id"])
    their_id = uuid.UUID(theirs["user"]["id"])
    for owner in (my_id, their_id):
        task = Task(user_id=owner, title="Write the report")
        category = Category(user_id=owner, name="Work")
        session.add_all([task, category])
        await session.flush()
        await session.execute(
            task_categories.insert().values(task_id=task.id, category_id=category.id)
        )
    await session.commit()

    response = await client.delete(f"{API}/users/me", headers=bearer(mine["access_token"]))
    assert response.status_code == 204
    assert response.content == b""

    assert await stored_user(session, EMAIL) is None
    assert await stored_refresh_tokens(session, my_id) == []
    for model in (Task, Category):
        mine_left = select(func.count()).select_from(model).where(model.user_id == my_id)
        theirs_left = select(func.count()).select_from(model).where(model.user_id == their_id)
        assert await _count(session, mine_left) == 0
        assert await _count(session, theirs_left) == 1
    assert await _count(session, select(func.count()).select_from(task_categories)) == 1
    assert await _count(session, select(func.count()).select_from(User)) == 1
    assert (
        await _count(
            session,
            select(func.count()).select_from(RefreshToken).where(RefreshToken.user_id == their_id),
        )
        == 1
    )

    me = await client.get(f"{API}/users/me", headers=bearer(mine["access_token"]))
    assert_problem(me, 401, "not_authenticated")
    assert_problem(
        await client.post(f"{API}/auth/refresh", json={"refresh_token": mine["refresh_token"]}),
        401,
        "invalid_refresh_token",
    )
    assert_problem(await login(client), 401, "invalid_credentials")
    # The address is free again.
    assert (await register(client)).get("user") is not None


async def test_delete_me_needs_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete(f"{API}/users/me"), 401, "not_authenticated")


async def test_users_me_works_for_an_unverified_account(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    signed_in = await sign_in(session, settings, is_active=False, email=EMAIL)
    assert (await client.get(f"{API}/users/me", headers=signed_in.headers)).status_code == 200
    patched = await client.patch(
        f"{API}/users/me", json={"full_name": "Still Unverified"}, headers=signed_in.headers
    )
    assert patched.status_code == 200
    assert patched.json()["is_active"] is False
    deleted = await client.delete(f"{API}/users/me", headers=signed_in.headers)
    assert deleted.status_code == 204
    assert await stored_user(session, EMAIL) is None


async def test_token_issued_before_tokens_valid_after_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    signed_in = await sign_in(session, settings, email=EMAIL)
    user = await stored_user(session, EMAIL)
    assert user is not None
    user.tokens_valid_after = datetime.now(UTC)
    await session.commit()
    assert_problem(
        await client.get(f"{API}/users/me", headers=signed_in.headers), 401, "not_authenticated"
    )


async def test_openapi_offers_no_null_for_the_name(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    full_name = schema["components"]["schemas"]["UserUpdate"]["properties"]["full_name"]
    assert full_name["type"] == "string"
    assert "anyOf" not in full_name
    assert full_name["pattern"] == "^[^\\x00]*$"
