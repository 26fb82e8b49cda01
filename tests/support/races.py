"""A served app for the races: accounts registered through it, verified in its database;
and a barrier that releases racing requests at once.

The barrier holds an account's user row FOR UPDATE while the test starts its requests and
waits until every one of them is blocked on a lock (so each has done all it does before
touching the row, argon2 included); leaving it commits, and the requests then really
overlap, in the order they reached the lock, every run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from taskapi.auth.models import User
from tests.support.factories import DEFAULT_PASSWORD


@dataclass
class Account:
    email: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class RaceServer:
    base_url: str
    engine: AsyncEngine
    """On the server's database, to verify accounts and read what was stored."""

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=60)

    async def verified_account(self) -> Account:
        email = f"race-{uuid.uuid4().hex[:12]}@example.com"
        async with self.client() as client:
            response = await client.post(
                "/api/v1/auth/register",
                json={"email": email, "password": DEFAULT_PASSWORD, "full_name": "Racer"},
            )
        assert response.status_code == 201, response.text
        async with self.engine.begin() as connection:
            await connection.execute(update(User).where(User.email == email).values(is_active=True))
        body = response.json()
        return Account(email, body["access_token"], body["refresh_token"])


BARRIER_TIMEOUT_SECONDS = 60

WaitForBlocked = Callable[[int], Awaitable[None]]


async def _blocked_on_locks(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        blocked = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(blocked or 0)


@asynccontextmanager
async def user_row_barrier(engine: AsyncEngine, email: str) -> AsyncIterator[WaitForBlocked]:
    """Holds the user row FOR UPDATE until the block ends; the callable it gives returns
    once that many requests wait on a lock."""

    async def wait_for_blocked(count: int) -> None:
        deadline = time.monotonic() + BARRIER_TIMEOUT_SECONDS
        while (blocked := await _blocked_on_locks(engine)) < count:
            assert time.monotonic() < deadline, f"{blocked} of {count} requests reached the lock"
            await asyncio.sleep(0.02)

    async with engine.connect() as connection, connection.begin():
        await connection.execute(select(User.id).where(User.email == email).with_for_update())
        yield wait_for_blocked
