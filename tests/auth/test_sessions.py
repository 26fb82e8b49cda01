"""Sessions (§7.2): one per sign-in, listed and ended by their owner; whatever ends a session
ends its access tokens (`sid`) from the very next request, cached user or not."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import RefreshTokenFamily
from taskapi.core.config import Settings
from tests.support.apps import SettingsFactory, make_client
from tests.support.auth import (
    API,
    OTHER_PASSWORD,
    STRONG_PASSWORD,
    Mailbox,
    bearer,
    register,
    stored_token,
)
from tests.support.problems import assert_problem

EMAIL = "ada@example.com"
SESSIONS = f"{API}/auth/sessions"
ME = f"{API}/users/me"
SESSION_FIELDS = {"id", "created_at", "last_used_at", "expires_at", "user_agent", "ip", "current"}
PHONE = "TaskPhone/2.1 (Android 15)"
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"


async def sign_in(client: httpx.AsyncClient, user_agent: str) -> dict[str, Any]:
    response = await client.post(
        f"{API}/auth/login",
        json={"email": EMAIL, "password": STRONG_PASSWORD},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sessions_of(client: httpx.AsyncClient, access_token: str) -> list[dict[str, Any]]:
    response = await client.get(SESSIONS, headers=bearer(access_token))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    items: list[dict[str, Any]] = response.json()["items"]
    for item in items:
        assert set(item) == SESSION_FIELDS
    return items


async def family_of(session: AsyncSession, refresh_token: str) -> RefreshTokenFamily:
    family_id = (await stored_token(session, refresh_token)).family_id
    family = await session.scalar(
        select(RefreshTokenFamily)
        .where(RefreshTokenFamily.id == family_id)
        .execution_options(populate_existing=True)
    )
    await session.commit()
    assert family is not None
    return family


async def still_works(client: httpx.AsyncClient, access_token: str) -> bool:
    """Asked twice, so that the second answer comes from the user cache when there is one."""
    answers = {(await client.get(ME, headers=bearer(access_token))).status_code for _ in range(2)}
    assert len(answers) == 1, answers
    return answers == {200}


async def test_each_sign_in_is_a_session_newest_first_with_its_client(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = datetime.now(UTC)
    registered = await register(client)
    phone = await sign_in(client, PHONE)
    laptop = await sign_in(client, LAPTOP)

    items = await sessions_of(client, phone["access_token"])

    assert len(items) == 3
    assert [item["user_agent"] for item in items] == [
        LAPTOP,
        PHONE,
        "python-httpx/" + httpx.__version__,
    ]
    assert [item["current"] for item in items] == [False, True, False]
    assert {item["ip"] for item in items} == {"127.0.0.1"}
    created = [datetime.fromisoformat(item["created_at"]) for item in items]
    assert created == sorted(created, reverse=True)
    assert before <= created[-1]
    stored = await family_of(session, laptop["refresh_token"])
    assert items[0]["id"] == str(stored.id)
    assert datetime.fromisoformat(items[0]["last_used_at"]) == stored.created_at
    assert datetime.fromisoformat(items[0]["expires_at"]) == stored.created_at + timedelta(days=7)
    assert [item["current"] for item in await sessions_of(client, registered["access_token"])] == [
        False,
        False,
        True,
    ]


async def test_a_refresh_moves_last_used_and_expiry_and_keeps_the_session(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await register(client)
    phone = await sign_in(client, PHONE)
    first = await family_of(session, phone["refresh_token"])
    family_id, created_at, last_used_at = first.id, first.created_at, first.last_used_at

    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": phone["refresh_token"]}
    )
    assert refreshed.status_code == 200

    after = await family_of(session, refreshed.json()["refresh_token"])
    assert after.id == family_id
    assert after.created_at == created_at
    assert after.last_used_at > last_used_at
    assert after.expires_at == after.last_used_at + timedelta(days=7)
    items = await sessions_of(client, refreshed.json()["access_token"])
    current = next(item for item in items if item["current"])
    assert current["id"] == str(family_id)
    assert datetime.fromisoformat(current["last_used_at"]) == after.last_used_at


async def test_the_client_ip_follows_the_trusted_proxy_rule(
    make_settings: SettingsFactory, app_factory: Callable[[Settings], Any]
) -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
    for trusted, expected in ((["127.0.0.1"], "203.0.113.7"), ([], "127.0.0.1")):
        app: FastAPI = await app_factory(make_settings(trusted_proxies=trusted))
        async with make_client(app) as client:
            response = await client.post(
                f"{API}/auth/register",
                json={
                    "email": f"{uuid.uuid4().hex[:8]}@example.com",
                    "password": STRONG_PASSWORD,
                    "full_name": "Ada",
                },
                headers=forwarded,
            )
            assert response.status_code == 201
            items = await sessions_of(client, response.json()["access_token"])
        assert [item["ip"] for item in items] == [expected]


async def test_an_overlong_user_agent_is_cut_and_an_empty_one_is_null(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    long = await sign_in(client, "A" * 2000)
    await sign_in(client, "")
    agents = [item["user_agent"] for item in await sessions_of(client, long["access_token"])]
    assert agents[:2] == [None, "A" * 512]


async def test_ending_a_session_ends_its_tokens_at_once_and_nothing_else(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await register(client)
    phone = await sign_in(client, PHONE)
    laptop = await sign_in(client, LAPTOP)
    # Both users' entries are cached now (on the backends that cache).
    assert await still_works(client, phone["access_token"])
    assert await still_works(client, laptop["access_token"])
    phone_id = (await family_of(session, phone["refresh_token"])).id

    ended = await client.delete(f"{SESSIONS}/{phone_id}", headers=bearer(laptop["access_token"]))

    assert ended.status_code == 204
    assert ended.content == b""
    assert not await still_works(client, phone["access_token"])
    refused = await client.get(f"{API}/tasks", headers=bearer(phone["access_token"]))
    assert_problem(refused, 401, "not_authenticated")
    stale = await client.post(f"{API}/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert_problem(stale, 401, "invalid_refresh_token")
    assert await still_works(client, laptop["access_token"])
    listed = await sessions_of(client, laptop["access_token"])
    assert str(phone_id) not in {item["id"] for item in listed}
    assert len(listed) == 2
    assert (await family_of(session, laptop["refresh_token"])).revoked_at is None
    again = await client.delete(f"{SESSIONS}/{phone_id}", headers=bearer(laptop["access_token"]))
    assert_problem(again, 404, "not_found")


async def test_a_session_can_end_itself(client: httpx.AsyncClient, session: AsyncSession) -> None:
    registered = await register(client)
    own = (await family_of(session, registered["refresh_token"])).id
    ended = await client.delete(f"{SESSIONS}/{own}", headers=bearer(registered["access_token"]))
    assert ended.status_code == 204
    assert not await still_works(client, registered["access_token"])


async def test_another_users_unknown_or_expired_session_is_404(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    ada = await register(client)
    bob = await register(client, email="bob@example.com")
    bobs = (await family_of(session, bob["refresh_token"])).id
    headers = bearer(ada["access_token"])

    for session_id in (bobs, uuid.uuid4()):
        assert_problem(
            await client.delete(f"{SESSIONS}/{session_id}", headers=headers), 404, "not_found"
        )
    assert await still_works(client, bob["access_token"])
    assert [item["id"] for item in await sessions_of(client, bob["access_token"])] == [str(bobs)]

    own = (await family_of(session, ada["refresh_token"])).id
    await session.execute(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.id == own)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    assert await sessions_of(client, ada["access_token"]) == []
    assert_problem(await client.delete(f"{SESSIONS}/{own}", headers=headers), 404, "not_found")
    bad = await client.delete(f"{SESSIONS}/not-a-uuid", headers=headers)
    assert_problem(bad, 400, "validation_error")


async def test_both_routes_need_a_signed_in_caller(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(SESSIONS), 401, "not_authenticated")
    assert_problem(await client.delete(f"{SESSIONS}/{uuid.uuid4()}"), 401, "not_authenticated")


async def test_logout_ends_its_access_token_at_once(client: httpx.AsyncClient) -> None:
    registered = await register(client)
    other = await sign_in(client, LAPTOP)
    assert await still_works(client, registered["access_token"])

    response = await client.post(
        f"{API}/auth/logout",
        json={"refresh_token": registered["refresh_token"]},
        headers=bearer(registered["access_token"]),
    )

    assert response.status_code == 204
    assert not await still_works(client, registered["access_token"])
    assert await still_works(client, other["access_token"])
    assert len(await sessions_of(client, other["access_token"])) == 1


async def test_reuse_of_a_rotated_token_ends_the_familys_access_tokens(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    other = await sign_in(client, LAPTOP)
    rotated = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert rotated.status_code == 200
    thief = rotated.json()
    assert await still_works(client, thief["access_token"])

    replayed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )

    assert_problem(replayed, 401, "invalid_refresh_token")
    for access_token in (registered["access_token"], thief["access_token"]):
        assert not await still_works(client, access_token)
    assert (await family_of(session, thief["refresh_token"])).revoked_at is not None
    assert await still_works(client, other["access_token"])


async def test_logout_all_ends_every_session(client: httpx.AsyncClient) -> None:
    registered = await register(client)
    await sign_in(client, PHONE)
    response = await client.post(
        f"{API}/auth/logout-all", headers=bearer(registered["access_token"])
    )
    assert response.status_code == 204
    fresh = await sign_in(client, LAPTOP)
    items = await sessions_of(client, fresh["access_token"])
    assert [(item["user_agent"], item["current"]) for item in items] == [(LAPTOP, True)]


async def test_a_password_change_keeps_only_the_callers_session(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    phone = await sign_in(client, PHONE)
    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": STRONG_PASSWORD, "new_password": OTHER_PASSWORD},
        headers=bearer(registered["access_token"]),
    )
    assert changed.status_code == 204
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert refreshed.status_code == 200
    items = await sessions_of(client, refreshed.json()["access_token"])
    own = await family_of(session, registered["refresh_token"])
    assert [(item["id"], item["current"]) for item in items] == [(str(own.id), True)]
    assert (await family_of(session, phone["refresh_token"])).revoked_at is not None


async def test_a_password_reset_ends_every_session(
    client: httpx.AsyncClient, mailbox: Mailbox, session: AsyncSession
) -> None:
    registered = await register(client)
    phone = await sign_in(client, PHONE)
    assert (
        await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    ).status_code == 202
    reset = await client.post(
        f"{API}/auth/reset-password",
        json={
            "token": await mailbox.token(EMAIL, "reset-password"),
            "new_password": OTHER_PASSWORD,
        },
    )
    assert reset.status_code == 204
    for tokens in (registered, phone):
        assert (await family_of(session, tokens["refresh_token"])).revoked_at is not None
        assert not await still_works(client, tokens["access_token"])
