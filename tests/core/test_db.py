import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.deps import SessionDep
from taskapi.core.errors import Conflict
from tests.conftest import make_client
from tests.factories import sign_in

probe = APIRouter(prefix="/api/v1/probe-db")


def _user(email: str) -> User:
    return User(email=email, password_hash="x", full_name="Probe", created_at=datetime.now(UTC))


@probe.post("/ok", status_code=201)
async def write_ok(session: SessionDep) -> None:
    session.add(_user("ok@example.com"))
    await session.flush()


@probe.post("/refused")
async def write_then_refuse(session: SessionDep) -> None:
    session.add(_user("refused@example.com"))
    await session.flush()
    raise Conflict("No.")


@probe.post("/refused-but-kept")
async def write_then_refuse_keeping(session: SessionDep) -> None:
    session.add(_user("kept@example.com"))
    await session.flush()
    raise Conflict("No, but remember the attempt.", keep_changes=True)


@probe.post("/crash")
async def write_then_crash(session: SessionDep) -> None:
    session.add(_user("crash@example.com"))
    await session.flush()
    raise RuntimeError("boom")


@pytest.fixture
async def probe_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    app.include_router(probe)
    async with make_client(app) as http:
        yield http


async def _stored_emails(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(User.email))).all())


async def test_success_commits_before_the_response(
    probe_client: httpx.AsyncClient, session: AsyncSession
) -> None:
    assert (await probe_client.post("/api/v1/probe-db/ok")).status_code == 201
    assert await _stored_emails(session) == {"ok@example.com"}


async def test_domain_error_rolls_back(
    probe_client: httpx.AsyncClient, session: AsyncSession
) -> None:
    assert (await probe_client.post("/api/v1/probe-db/refused")).status_code == 409
    assert (await probe_client.post("/api/v1/probe-db/crash")).status_code == 500
    assert await _stored_emails(session) == set()


async def test_domain_error_with_keep_changes_commits(
    probe_client: httpx.AsyncClient, session: AsyncSession
) -> None:
    assert (await probe_client.post("/api/v1/probe-db/refused-but-kept")).status_code == 409
    assert await _stored_emails(session) == {"kept@example.com"}


async def test_reads_do_not_wait_for_an_open_write_transaction(
    app: FastAPI, session: AsyncSession, settings: Settings
) -> None:
    """GET runs in a read-only session: on SQLite it does not queue for the write lock that
    every writing request takes, on PostgreSQL it skips BEGIN/COMMIT."""
    signed_in = await sign_in(session, settings)
    async with app.state.engine.connect() as writer:
        await writer.begin()
        await writer.execute(text("UPDATE users SET full_name = full_name"))
        async with make_client(app) as client:
            response = await asyncio.wait_for(
                client.get("/api/v1/tasks", headers=signed_in.headers), timeout=3
            )
        await writer.rollback()
    assert response.status_code == 200
    assert response.json()["total"] == 0


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"),
    reason="PostgreSQL pool behaviour: SQLite has no server connections to lose",
)
async def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(
    app: FastAPI, session: AsyncSession, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What pre-ping is for: the server dropped the pooled connections (a restart, an idle
    timeout); the next request must still be served, on a fresh connection."""
    monkeypatch.setattr("taskapi.core.db.PING_AFTER_IDLE_SECONDS", 0.0)
    signed_in = await sign_in(session, settings)
    async with make_client(app) as client:
        assert (await client.get("/api/v1/tasks", headers=signed_in.headers)).status_code == 200
        await session.close()
        async with app.state.engine.connect() as pooled:
            pooled_pid = await pooled.scalar(text("SELECT pg_backend_pid()"))
        outsider = create_async_engine(settings.database_url)
        async with outsider.connect() as connection:
            killed = await connection.scalar(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": pooled_pid}
            )
        await outsider.dispose()
        assert killed is True
        response = await client.get("/api/v1/tasks", headers=signed_in.headers)
    assert response.status_code == 200
