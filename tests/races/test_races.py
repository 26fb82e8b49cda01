"""Concurrent requests that only one may win, over real HTTP to two workers on PostgreSQL:
exactly one winner, every other request the documented 4xx, never a 500, and the stored
rows agree."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from taskapi.auth.models import RefreshToken, User
from taskapi.categories.models import Category
from taskapi.tasks.models import Task
from taskapi.webhooks.models import Webhook
from taskapi.webhooks.service import MAX_WEBHOOKS
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.races import RaceServer, user_row_barrier

pytestmark = pytest.mark.needs_services(
    "postgresql",
    reason="races need PostgreSQL's row locks and several workers; the PostgreSQL pass runs them",
)

RACERS = 12


def outcomes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    """(status, problem code) of every answer: winners have no code."""
    return Counter(
        (r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in responses
    )


async def test_concurrent_refreshes_of_one_token(race_server: RaceServer) -> None:
    account = await race_server.verified_account()
    async with race_server.client() as client:
        responses = await asyncio.gather(
            *(
                client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
                for _ in range(RACERS)
            )
        )
        assert outcomes(responses) == {
            (200, None): 1,
            (401, "invalid_refresh_token"): RACERS - 1,
        }
        # The losers presented a token that had just been rotated: reuse, so the whole
        # session ends, the winner's new token included (RFC 9700 reuse detection).
        (winner,) = [r for r in responses if r.status_code == 200]
        again = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": winner.json()["refresh_token"]}
        )
        assert again.status_code == 401
    async with race_server.engine.connect() as connection:
        live = await connection.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .join(User, User.id == RefreshToken.user_id)
            .where(User.email == account.email, RefreshToken.revoked_at.is_(None))
        )
        issued = await connection.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .join(User, User.id == RefreshToken.user_id)
            .where(User.email == account.email)
        )
    assert (live, issued) == (0, 2)


async def test_concurrent_patches_of_one_version(race_server: RaceServer) -> None:
    account = await race_server.verified_account()
    async with race_server.client() as client:
        created = await client.post(
            "/api/v1/tasks", json={"title": "Contended"}, headers=account.headers
        )
        assert created.status_code == 201
        task_id = created.json()["id"]
        responses = await asyncio.gather(
            *(
                client.patch(
                    f"/api/v1/tasks/{task_id}",
                    json={"title": f"Writer {number}", "version": 1},
                    headers=account.headers,
                )
                for number in range(RACERS)
            )
        )
    assert outcomes(responses) == {(200, None): 1, (409, "version_conflict"): RACERS - 1}
    (winner,) = [r for r in responses if r.status_code == 200]
    assert winner.json()["version"] == 2
    assert all(r.json()["current_version"] == 2 for r in responses if r.status_code == 409)
    async with race_server.engine.connect() as connection:
        stored = (
            await connection.execute(
                select(Task.title, Task.version).where(Task.id == uuid.UUID(task_id))
            )
        ).one()
    assert tuple(stored) == (winner.json()["title"], 2)


async def test_concurrent_creates_of_one_category_name(race_server: RaceServer) -> None:
    account = await race_server.verified_account()
    async with race_server.client() as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/v1/categories",
                    # Names are compared after trimming; vary the padding.
                    json={"name": " " * (number % 3) + "Errands"},
                    headers=account.headers,
                )
                for number in range(RACERS)
            )
        )
    assert outcomes(responses) == {(201, None): 1, (409, "category_exists"): RACERS - 1}
    async with race_server.engine.connect() as connection:
        names = (
            await connection.scalars(
                select(Category.name)
                .join(User, User.id == Category.user_id)
                .where(User.email == account.email)
            )
        ).all()
    assert names == ["Errands"]


async def test_concurrent_creates_of_the_last_webhook(race_server: RaceServer) -> None:
    """Every racer counts the webhooks only once the barrier lets it go, so all of them
    would see one place left if the count were not taken under the user row's lock."""
    account = await race_server.verified_account()
    # A literal public address: nothing is resolved, and creating sends nothing to it.
    hook = {"url": "https://93.184.215.14/hook", "events": ["task.created"]}
    async with race_server.client() as client:
        for _ in range(MAX_WEBHOOKS - 1):
            created = await client.post("/api/v1/webhooks", json=hook, headers=account.headers)
            assert created.status_code == 201, created.text
        async with user_row_barrier(race_server.engine, account.email) as wait_for_blocked:
            racers = [
                asyncio.create_task(
                    client.post("/api/v1/webhooks", json=hook, headers=account.headers)
                )
                for _ in range(RACERS)
            ]
            await wait_for_blocked(RACERS)
        responses = await asyncio.gather(*racers)
    assert outcomes(responses) == {(201, None): 1, (400, "webhook_limit_reached"): RACERS - 1}
    async with race_server.engine.connect() as connection:
        stored = await connection.scalar(
            select(func.count())
            .select_from(Webhook)
            .join(User, User.id == Webhook.user_id)
            .where(User.email == account.email)
        )
    assert stored == MAX_WEBHOOKS


async def test_concurrent_registrations_of_one_email(race_server: RaceServer) -> None:
    local = f"twin-{uuid.uuid4().hex[:8]}"
    # Emails are case-insensitive: the racers spell the same address differently.
    spellings = [f"{local}@example.com", f"{local.upper()}@EXAMPLE.COM", f"{local}@Example.com"]
    async with race_server.client() as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/v1/auth/register",
                    json={
                        "email": spellings[number % len(spellings)],
                        "password": DEFAULT_PASSWORD,
                        "full_name": f"Twin {number}",
                    },
                )
                for number in range(RACERS)
            )
        )
    assert outcomes(responses) == {(201, None): 1, (409, "email_taken"): RACERS - 1}
    async with race_server.engine.connect() as connection:
        stored = (
            await connection.scalars(
                select(User.email).where(func.lower(User.email) == f"{local}@example.com")
            )
        ).all()
    assert stored == [f"{local}@example.com"]


async def test_a_refresh_racing_the_end_of_its_session_leaves_nothing_alive(
    race_server: RaceServer,
) -> None:
    """Whichever commits first, what the refresh handed out (if anything) dies with the
    session: the family row is the point both sides serialize on (auth/families.py)."""
    account = await race_server.verified_account()
    async with race_server.client() as client:
        for _ in range(8):
            login = await client.post(
                "/api/v1/auth/login", json={"email": account.email, "password": DEFAULT_PASSWORD}
            )
            assert login.status_code == 200
            tokens = login.json()
            listed = await client.get("/api/v1/auth/sessions", headers=account.headers)
            newest = listed.json()["items"][0]
            assert newest["current"] is False
            victim = newest["id"]
            refreshed, ended = await asyncio.gather(
                client.post(
                    "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
                ),
                client.delete(f"/api/v1/auth/sessions/{victim}", headers=account.headers),
            )
            assert ended.status_code == 204, ended.text
            assert refreshed.status_code in (200, 401), refreshed.text
            survivors = [tokens["access_token"]]
            if refreshed.status_code == 200:
                survivors.append(refreshed.json()["access_token"])
                again = await client.post(
                    "/api/v1/auth/refresh",
                    json={"refresh_token": refreshed.json()["refresh_token"]},
                )
                assert again.status_code == 401, again.text
            for access_token in survivors:
                me = await client.get(
                    "/api/v1/users/me", headers={"Authorization": f"Bearer {access_token}"}
                )
                assert me.status_code == 401, me.text
        assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 200
