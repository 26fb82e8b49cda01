"""Account rules that must hold against concurrent requests, over real HTTP to two workers
on PostgreSQL.
Each test releases its requests at once through the user-row barrier of
tests/support/races.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from taskapi.auth.models import RefreshToken, User
from taskapi.auth.service import MAX_FAILED_LOGINS
from taskapi.core.models import utcnow
from taskapi.core.security import hash_token, new_opaque_token
from taskapi.tasks.models import Task
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.races import RaceServer, user_row_barrier

pytestmark = pytest.mark.needs_services(
    "postgresql",
    reason="races need PostgreSQL's row locks and several workers; the PostgreSQL pass runs them",
)

WRONG_PASSWORD = "Wr0ng!Passw0rd"
WRONG_GUESSES = 30


def _codes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    return Counter(
        (r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in responses
    )


async def _stored_lockout(race_server: RaceServer, email: str) -> tuple[int, datetime | None, int]:
    """The account's failure count, the end of its lock, and how many refresh tokens it was
    ever issued."""
    async with race_server.engine.connect() as connection:
        stored = (
            await connection.execute(
                select(User.failed_login_attempts, User.locked_until).where(User.email == email)
            )
        ).one()
        issued = await connection.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .join(User, User.id == RefreshToken.user_id)
            .where(User.email == email)
        )
    return stored.failed_login_attempts, stored.locked_until, int(issued or 0)


def _the_lock(answers: list[httpx.Response]) -> datetime:
    locks = {r.json()["locked_until"] for r in answers if r.status_code == 403}
    assert len(locks) == 1, "one lock, set once, never lifted and set again"
    return datetime.fromisoformat(locks.pop())


async def test_thirty_wrong_passwords_at_once_count_five_failures_and_lock_once(
    race_server: RaceServer,
) -> None:
    """Concurrent failures all count, in whatever order they get the row, and the fifth
    locks: none is lost, none counts past the lock (issue 17)."""
    account = await race_server.verified_account()
    wrong = {"email": account.email, "password": WRONG_PASSWORD}
    right = {"email": account.email, "password": DEFAULT_PASSWORD}
    async with race_server.client() as client:
        async with user_row_barrier(race_server.engine, account.email) as wait_for_blocked:
            guesses = [
                asyncio.create_task(client.post("/api/v1/auth/login", json=wrong))
                for _ in range(WRONG_GUESSES)
            ]
            await wait_for_blocked(WRONG_GUESSES)
        answers = await asyncio.gather(*guesses)
        owner_answer = await client.post("/api/v1/auth/login", json=right)

    assert _codes(answers) == {
        (401, "invalid_credentials"): MAX_FAILED_LOGINS - 1,
        (403, "account_locked"): WRONG_GUESSES - (MAX_FAILED_LOGINS - 1),
    }
    assert owner_answer.status_code == 403, owner_answer.text
    assert owner_answer.json()["code"] == "account_locked"
    lock = _the_lock([*answers, owner_answer])
    assert await _stored_lockout(race_server, account.email) == (MAX_FAILED_LOGINS, lock, 1)


async def test_the_right_password_checked_before_a_concurrent_failure_locks_is_refused(
    race_server: RaceServer,
) -> None:
    """The right password, checked before a concurrent failure locks the account and decided
    on the row after it, must not get in nor lift the lock (issue 17: 200 after 15
    account_locked answers), whatever the order of the wrong ones queued with it.

    PostgreSQL gives the row first to the request that queued first, and no other order is
    certain (tests/support/races.py), so the failure that locks is that one: the four before
    it are counted one after another, and the right password queues behind it."""
    account = await race_server.verified_account()
    wrong = {"email": account.email, "password": WRONG_PASSWORD}
    right = {"email": account.email, "password": DEFAULT_PASSWORD}
    async with race_server.client() as client:
        counted = [
            await client.post("/api/v1/auth/login", json=wrong)
            for _ in range(MAX_FAILED_LOGINS - 1)
        ]
        async with user_row_barrier(race_server.engine, account.email) as wait_for_blocked:
            locking = asyncio.create_task(client.post("/api/v1/auth/login", json=wrong))
            await wait_for_blocked(1)
            owner = asyncio.create_task(client.post("/api/v1/auth/login", json=right))
            guesses = [
                asyncio.create_task(client.post("/api/v1/auth/login", json=wrong))
                for _ in range(WRONG_GUESSES - MAX_FAILED_LOGINS)
            ]
            await wait_for_blocked(2 + len(guesses))
        locking_answer = await locking
        owner_answer = await owner
        answers = await asyncio.gather(*guesses)

    assert _codes(counted) == {(401, "invalid_credentials"): MAX_FAILED_LOGINS - 1}
    assert owner_answer.status_code == 403, owner_answer.text
    assert owner_answer.json()["code"] == "account_locked"
    assert _codes([locking_answer, *answers]) == {
        (403, "account_locked"): WRONG_GUESSES - (MAX_FAILED_LOGINS - 1)
    }
    lock = _the_lock([locking_answer, owner_answer, *answers])
    assert await _stored_lockout(race_server, account.email) == (MAX_FAILED_LOGINS, lock, 1), (
        "five failures, the lock, and only the registration's token: the right password got none"
    )


@pytest.mark.parametrize("create_first", [True, False], ids=["create_first", "delete_first"])
async def test_task_creation_racing_account_deletion_is_201_or_401(
    race_server: RaceServer, create_first: bool
) -> None:
    """Never the 500 of a foreign-key violation: a task created after its owner was
    deleted is refused as unauthenticated; one created before goes with the account."""
    account = await race_server.verified_account()
    async with race_server.client() as client:

        def create() -> Coroutine[Any, Any, httpx.Response]:
            return client.post(
                "/api/v1/tasks", json={"title": "Racing the deletion"}, headers=account.headers
            )

        def delete() -> Coroutine[Any, Any, httpx.Response]:
            return client.delete("/api/v1/users/me", headers=account.headers)

        first, second = (create, delete) if create_first else (delete, create)
        async with user_row_barrier(race_server.engine, account.email) as wait_for_blocked:
            started_first = asyncio.create_task(first())
            await wait_for_blocked(1)
            started_second = asyncio.create_task(second())
            await wait_for_blocked(2)
        first_answer, second_answer = await started_first, await started_second
    created, deleted = (
        (first_answer, second_answer) if create_first else (second_answer, first_answer)
    )
    assert deleted.status_code == 204, deleted.text
    assert created.status_code == (201 if create_first else 401), created.text
    async with race_server.engine.connect() as connection:
        tasks = await connection.scalar(
            select(func.count()).select_from(Task).where(Task.title == "Racing the deletion")
        )
    assert tasks == 0


async def _reset_link_token(race_server: RaceServer, email: str) -> str:
    """A reset token stored for the account, as forgot-password would email it."""
    token = new_opaque_token()
    async with race_server.engine.begin() as connection:
        await connection.execute(
            update(User)
            .where(User.email == email)
            .values(
                password_reset_token_hash=hash_token(token),
                password_reset_expires_at=utcnow() + timedelta(hours=1),
            )
        )
    return token


async def _live_refresh_tokens(race_server: RaceServer, email: str) -> int:
    async with race_server.engine.connect() as connection:
        return int(
            await connection.scalar(
                select(func.count())
                .select_from(RefreshToken)
                .join(User, User.id == RefreshToken.user_id)
                .where(User.email == email, RefreshToken.revoked_at.is_(None))
            )
            or 0
        )


REVOCATIONS = ["logout_all", "reset_password", "delete_account"]


@pytest.mark.parametrize("revocation", REVOCATIONS)
@pytest.mark.parametrize("refresh_first", [True, False], ids=["refresh_first", "revoke_first"])
async def test_revocation_racing_a_refresh_ends_what_the_refresh_issued(
    race_server: RaceServer, revocation: str, refresh_first: bool
) -> None:
    """Logout-all, a password reset and account deletion against a refresh of the same
    account: never a deadlock's 500, and whichever commits first, the tokens the refresh
    hands out are dead afterwards (issue 17: a refresh committing during logout-all kept a
    working access token and refresh chain; reset and delete deadlocked with it)."""
    account = await race_server.verified_account()
    reset_token = await _reset_link_token(race_server, account.email)
    async with race_server.client() as client:

        def refresh() -> Coroutine[Any, Any, httpx.Response]:
            return client.post(
                "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
            )

        def revoke() -> Coroutine[Any, Any, httpx.Response]:
            match revocation:
                case "logout_all":
                    return client.post("/api/v1/auth/logout-all", headers=account.headers)
                case "reset_password":
                    return client.post(
                        "/api/v1/auth/reset-password",
                        json={"token": reset_token, "new_password": "N3w!Passw0rd"},
                    )
                case _:
                    return client.delete("/api/v1/users/me", headers=account.headers)

        first, second = (refresh, revoke) if refresh_first else (revoke, refresh)
        async with user_row_barrier(race_server.engine, account.email) as wait_for_blocked:
            started_first = asyncio.create_task(first())
            await wait_for_blocked(1)
            started_second = asyncio.create_task(second())
            await wait_for_blocked(2)
        first_answer, second_answer = await started_first, await started_second
        refreshed, revoked = (
            (first_answer, second_answer) if refresh_first else (second_answer, first_answer)
        )

        assert revoked.status_code == 204, revoked.text
        assert refreshed.status_code in (200, 401), refreshed.text
        if refreshed.status_code == 200:
            tokens = refreshed.json()
            me = await client.get(
                "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            assert me.status_code == 401, "the refreshed access token outlived the revocation"
            again = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert again.status_code == 401, "the refreshed refresh token outlived it"
        else:
            assert refreshed.json()["code"] == "invalid_refresh_token"
    assert await _live_refresh_tokens(race_server, account.email) == 0
