"""A served app for the races: accounts registered through it, verified in its database;
and a barrier that releases racing requests at once.

The barrier holds an account's user row FOR UPDATE while the test starts its requests and
waits until every one of them is queued on that row (so each has done all it does before
touching the row, argon2 included); leaving it commits, and the requests then really
overlap, every run.

Which of them gets the row first is certain: the one that reached the lock first (it holds
PostgreSQL's tuple lock while it waits for the barrier). The others are not served in the
order they queued: once the row has been updated, each waiter follows the update chain and
waits for the updating transaction itself, and when that ends they all race for the new
version. A test may rely on the first request it queued going first, never on the last
going last.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

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


async def until_a_session_waits_for_a_lock(session: AsyncSession, *, what: str) -> None:
    """Returns once a session of the test's PostgreSQL database waits for a lock, polling
    for up to 10 s on `session` (each poll its own transaction); fails naming `what` never
    waited."""
    for _ in range(400):
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        await session.commit()
        if waiting:
            return
        await asyncio.sleep(0.025)
    pytest.fail(f"{what} never waited for a lock")


WaitForBlocked = Callable[[int], Awaitable[None]]


# Sessions queued on the barrier's row: the first waits for the barrier's transaction, the
# others for the tuple lock the first holds. Not every session waiting on some lock: the
# barrier must count its requests only.
_QUEUED_ON_THE_ROW = text(
    """
    SELECT count(DISTINCT waiting.pid) FROM pg_locks AS waiting
    WHERE NOT waiting.granted AND (
        (waiting.locktype = 'tuple'
         AND waiting.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND waiting.relation = to_regclass(:table))
        OR (waiting.locktype = 'transactionid' AND waiting.transactionid IN (
            SELECT held.transactionid FROM pg_locks AS held
            WHERE held.pid = :barrier AND held.locktype = 'transactionid' AND held.granted)))
    """
)


async def _queued_on_the_row(engine: AsyncEngine, barrier_pid: int) -> int:
    async with engine.connect() as connection:
        queued = await connection.scalar(
            _QUEUED_ON_THE_ROW, {"table": User.__tablename__, "barrier": barrier_pid}
        )
    return int(queued or 0)


@asynccontextmanager
async def user_row_barrier(engine: AsyncEngine, email: str) -> AsyncIterator[WaitForBlocked]:
    """Holds the user row FOR UPDATE until the block ends; the callable it gives returns
    once that many requests are queued on the row."""
    async with engine.connect() as connection, connection.begin():
        await connection.execute(select(User.id).where(User.email == email).with_for_update())
        barrier_pid = int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0)

        async def wait_for_blocked(count: int) -> None:
            deadline = time.monotonic() + BARRIER_TIMEOUT_SECONDS
            while (queued := await _queued_on_the_row(engine, barrier_pid)) < count:
                assert time.monotonic() < deadline, f"{queued} of {count} requests reached the lock"
                await asyncio.sleep(0.02)

        yield wait_for_blocked
