"""`auth_failures_total{reason}` moves once per refused attempt, with the reason that refused
it, and only then (the counter is process-wide, so each test looks at its own delta)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.metrics import AUTH_FAILURE_REASONS
from taskapi.core.config import Settings
from tests.support.auth import (
    API,
    OTHER_PASSWORD,
    Mailbox,
    bearer,
    login,
    register,
)
from tests.support.factories import DEFAULT_PASSWORD, sign_in

EMAIL = "ada@example.com"
WRONG = "Wr0ng!Passw0rd"


def failures() -> dict[str, float]:
    return {
        reason: REGISTRY.get_sample_value("auth_failures_total", {"reason": reason}) or 0.0
        for reason in AUTH_FAILURE_REASONS
    }


async def counted(action: Callable[[], Awaitable[object]]) -> dict[str, float]:
    """The failures `action` added, by reason (reasons it did not touch left out)."""
    before = failures()
    await action()
    after = failures()
    return {
        reason: delta
        for reason in AUTH_FAILURE_REASONS
        if (delta := after[reason] - before[reason])
    }


async def test_wrong_password_and_unknown_email_are_invalid_credentials(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    await sign_in(session, settings, email=EMAIL)

    async def attempts() -> None:
        assert (await login(client, email=EMAIL, password=WRONG)).status_code == 401
        assert (await login(client, email="nobody@example.com", password=WRONG)).status_code == 401

    assert await counted(attempts) == {"invalid_credentials": 2}

    async def success() -> None:
        assert (await login(client, email=EMAIL, password=DEFAULT_PASSWORD)).status_code == 200

    assert await counted(success) == {}


async def test_the_locking_failure_and_logins_while_locked_are_account_locked(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    await sign_in(session, settings, email=EMAIL)

    async def five_failures() -> None:
        statuses = [
            (await login(client, email=EMAIL, password=WRONG)).status_code for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 403]

    assert await counted(five_failures) == {"invalid_credentials": 4, "account_locked": 1}

    async def while_locked() -> None:
        assert (await login(client, email=EMAIL, password=DEFAULT_PASSWORD)).status_code == 403

    assert await counted(while_locked) == {"account_locked": 1}


async def test_bad_access_tokens_are_invalid_revoked_ones_revoked(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    ada = await sign_in(session, settings, email=EMAIL)

    async def invalid() -> None:
        me = await client.get(f"{API}/users/me", headers=bearer("not-a-jwt"))
        assert me.status_code == 401

    assert await counted(invalid) == {"invalid_access_token": 1}

    async def missing() -> None:
        assert (await client.get(f"{API}/users/me")).status_code == 401

    assert await counted(missing) == {}

    async def revoked() -> None:
        logout_all = await client.post(f"{API}/auth/logout-all", headers=ada.headers)
        assert logout_all.status_code == 204
        assert (await client.get(f"{API}/users/me", headers=ada.headers)).status_code == 401

    assert await counted(revoked) == {"revoked_access_token": 1}

    bea = await sign_in(session, settings, email="bea@example.com")

    async def deleted() -> None:
        assert (await client.delete(f"{API}/users/me", headers=bea.headers)).status_code == 204
        assert (await client.get(f"{API}/users/me", headers=bea.headers)).status_code == 401

    assert await counted(deleted) == {"revoked_access_token": 1}


async def test_refresh_failures_and_reuse(client: httpx.AsyncClient) -> None:
    registered = await register(client, email=EMAIL)

    async def unknown() -> None:
        response = await client.post(f"{API}/auth/refresh", json={"refresh_token": "0" * 64})
        assert response.status_code == 401

    assert await counted(unknown) == {"invalid_refresh_token": 1}

    rotated = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert rotated.status_code == 200

    async def reuse() -> None:
        again = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
        )
        assert again.status_code == 401

    assert await counted(reuse) == {"refresh_token_reuse": 1}


async def test_bad_email_link_tokens_are_invalid_email_token(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await register(client, email=EMAIL)

    async def bad_links() -> None:
        verify = await client.post(f"{API}/auth/verify-email", json={"token": "f" * 64})
        assert verify.status_code == 400
        reset = await client.post(
            f"{API}/auth/reset-password", json={"token": "f" * 64, "new_password": OTHER_PASSWORD}
        )
        assert reset.status_code == 400

    assert await counted(bad_links) == {"invalid_email_token": 2}

    async def good_link() -> None:
        token = await mailbox.token(EMAIL, "verify-email")
        verify = await client.post(f"{API}/auth/verify-email", json={"token": token})
        assert verify.status_code == 200

    assert await counted(good_link) == {}


async def test_wrong_current_password_on_change_is_invalid_credentials(
    client: httpx.AsyncClient,
) -> None:
    registered = await register(client, email=EMAIL)

    async def wrong_current() -> None:
        response = await client.post(
            f"{API}/users/me/password",
            json={"current_password": WRONG, "new_password": OTHER_PASSWORD},
            headers=bearer(registered["access_token"]),
        )
        assert response.status_code == 400

    assert await counted(wrong_current) == {"invalid_credentials": 1}
