"""argon2 runs with nothing locked.

On SQLite one write lock covers the whole file: a sign-in, registration, reset or password
change that hashed inside it would hold up every other writer for the hash time. Here the
hasher waits at a gate, so the hash takes as long as the test wants: while it waits,
another user's task creation must go through, and the paused request must still end right.
On PostgreSQL the same tests hold the lockout and the password change to their rules when
the row changes during the hash.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import RefreshToken
from taskapi.core.security import PasswordHasher, argon2id, hash_token
from taskapi.tasks.models import Task
from tests.support.apps import state_of
from tests.support.auth import API, OTHER_PASSWORD, change_user, stored_user
from tests.support.factories import DEFAULT_PASSWORD, SignedIn

GUARD_SECONDS = 30
"""Only so that a regression fails instead of hanging; nothing here waits for time."""


class GatedHasher(PasswordHasher):
    """The real hasher, except that every hash and verification first waits at a gate."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.waiting = asyncio.Event()
        self.gate = asyncio.Event()

    async def _pass_gate(self) -> None:
        self.waiting.set()
        await self.gate.wait()

    async def hash(self, password: str) -> str:
        await self._pass_gate()
        return await super().hash(password)

    async def verify(self, password: str, password_hash: str) -> bool:
        await self._pass_gate()
        return await super().verify(password, password_hash)


@pytest.fixture
def gated_hasher(app: FastAPI) -> Iterator[GatedHasher]:
    original = state_of(app)["password_hasher"]
    hasher = GatedHasher()
    state_of(app)["password_hasher"] = hasher
    yield hasher
    state_of(app)["password_hasher"] = original
    hasher.shutdown()


class Paused:
    """A request started in the background that is now waiting inside the hasher."""

    def __init__(self, hasher: GatedHasher, call: asyncio.Task[httpx.Response]) -> None:
        self.hasher = hasher
        self.call = call

    async def release(self) -> httpx.Response:
        assert not self.call.done(), "the request finished without waiting for its hash"
        self.hasher.gate.set()
        return await asyncio.wait_for(self.call, GUARD_SECONDS)


async def pause_in_hasher(
    client: httpx.AsyncClient,
    hasher: GatedHasher,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Paused:
    call = asyncio.create_task(client.post(f"{API}{path}", json=body, headers=headers))
    await asyncio.wait_for(hasher.waiting.wait(), GUARD_SECONDS)
    return Paused(hasher, call)


@pytest.fixture
async def paused_calls(gated_hasher: GatedHasher) -> AsyncIterator[None]:
    """Opens the gate at the end whatever happened, so no request is left hanging."""
    yield
    gated_hasher.gate.set()


async def _count(session: AsyncSession, statement: Any) -> int:
    value = await session.scalar(statement)
    await session.commit()
    return int(value or 0)


async def _password_hash(session: AsyncSession, email: str) -> str:
    user = await stored_user(session, email)
    assert user is not None
    return user.password_hash


@pytest.mark.usefixtures("paused_calls")
@pytest.mark.parametrize("flow", ["login", "register", "reset", "change_password"])
async def test_a_request_hashing_a_password_does_not_hold_up_other_writers(
    client: httpx.AsyncClient,
    session: AsyncSession,
    gated_hasher: GatedHasher,
    alice: SignedIn,
    bob: SignedIn,
    flow: str,
) -> None:
    email = alice.user.email
    reset_token = secrets.token_hex(32)
    path, body, headers, expected = {
        "login": ("/auth/login", {"email": email, "password": DEFAULT_PASSWORD}, None, 200),
        "register": (
            "/auth/register",
            {"email": "grace@example.com", "password": OTHER_PASSWORD, "full_name": "Grace"},
            None,
            201,
        ),
        "reset": (
            "/auth/reset-password",
            {"token": reset_token, "new_password": OTHER_PASSWORD},
            None,
            204,
        ),
        "change_password": (
            "/users/me/password",
            {"current_password": DEFAULT_PASSWORD, "new_password": OTHER_PASSWORD},
            alice.headers,
            204,
        ),
    }[flow]
    if flow == "reset":
        await change_user(
            session,
            email,
            password_reset_token_hash=hash_token(reset_token),
            password_reset_expires_at=datetime.now(UTC) + timedelta(hours=1),
        )

    paused = await pause_in_hasher(client, gated_hasher, path, body, headers)
    created = await asyncio.wait_for(
        client.post(f"{API}/tasks", json={"title": "Meanwhile"}, headers=bob.headers),
        GUARD_SECONDS,
    )
    assert created.status_code == 201, created.text
    response = await paused.release()
    assert response.status_code == expected, response.text

    assert (
        await _count(
            session, select(func.count()).select_from(Task).where(Task.user_id == bob.user.id)
        )
        == 1
    )
    match flow:
        case "login":
            tokens = select(func.count()).select_from(RefreshToken)
            assert await _count(session, tokens.where(RefreshToken.user_id == alice.user.id)) == 1
        case "register":
            assert await stored_user(session, "grace@example.com") is not None
        case "reset" | "change_password":
            assert argon2id().verify(OTHER_PASSWORD, await _password_hash(session, email))


@pytest.mark.usefixtures("paused_calls")
async def test_a_lock_set_while_the_right_password_is_checked_stands(
    client: httpx.AsyncClient, session: AsyncSession, gated_hasher: GatedHasher, alice: SignedIn
) -> None:
    """The fifth concurrent failure locks the account while a right password is being
    verified: the success must see the lock, not clear it."""
    email = alice.user.email
    paused = await pause_in_hasher(
        client, gated_hasher, "/auth/login", {"email": email, "password": DEFAULT_PASSWORD}
    )
    locked_until = datetime.now(UTC) + timedelta(minutes=15)
    await asyncio.wait_for(
        change_user(session, email, failed_login_attempts=5, locked_until=locked_until),
        GUARD_SECONDS,
    )
    response = await paused.release()

    assert response.status_code == 403, response.text
    assert response.json()["code"] == "account_locked"
    user = await stored_user(session, email)
    assert user is not None
    assert user.failed_login_attempts == 5
    assert user.locked_until == locked_until
    tokens = select(func.count()).select_from(RefreshToken)
    assert await _count(session, tokens.where(RefreshToken.user_id == alice.user.id)) == 0


@pytest.mark.usefixtures("paused_calls")
async def test_a_password_reset_while_the_old_one_is_checked_is_not_overwritten(
    client: httpx.AsyncClient, session: AsyncSession, gated_hasher: GatedHasher, alice: SignedIn
) -> None:
    email = alice.user.email
    paused = await pause_in_hasher(
        client,
        gated_hasher,
        "/users/me/password",
        {"current_password": DEFAULT_PASSWORD, "new_password": OTHER_PASSWORD},
        alice.headers,
    )
    reset_hash = argon2id().hash("Th1rd!Passw0rd")
    await asyncio.wait_for(change_user(session, email, password_hash=reset_hash), GUARD_SECONDS)
    response = await paused.release()

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "incorrect_password"
    assert await _password_hash(session, email) == reset_hash
