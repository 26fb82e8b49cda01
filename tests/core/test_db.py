import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import event, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from taskapi.auth.models import User
from taskapi.core.config import Settings, SettingsDep
from taskapi.core.db import (
    AppSession,
    DatabaseUnreachable,
    SessionDep,
    check_database,
    create_engine,
    is_database_unavailable,
)
from taskapi.core.errors import Conflict
from tests.support.apps import make_client, state_of
from tests.support.backends import create_test_engine, server_url_of
from tests.support.factories import sign_in
from tests.support.processes import free_port

probe = APIRouter(prefix="/api/v1/probe-db")
CLOSED_PORT = free_port()


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


@probe.get("/bad-statement")
async def bad_statement(session: SessionDep) -> None:
    await session.execute(text("SELECT * FROM no_such_table"))


@probe.get("/read")
async def read_only(session: SessionDep) -> int:
    return len((await session.scalars(select(User.id))).all())


@probe.get("/refused-connection")
async def refused_connection(settings: SettingsDep) -> None:
    """A database the driver cannot reach: nothing listens on the port."""
    unreachable = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{CLOSED_PORT}/none"}
    )
    engine = create_engine(unreachable)
    try:
        await check_database(engine)
    finally:
        await engine.dispose()


@probe.get("/missing-file")
async def missing_file() -> str:
    """An OSError that has nothing to do with the database."""
    return (Path(__file__).parent / "no-such-file.txt").read_text()


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


async def test_a_read_is_not_committed_and_a_write_is(probe_client: httpx.AsyncClient) -> None:
    """A GET's session read and wrote nothing: closing it ends what it began, and the
    commit SQLAlchemy would run first (events, a greenlet hop) is skipped."""
    commits: list[Session] = []

    def count_commit(session: Session) -> None:
        commits.append(session)

    event.listen(AppSession, "after_commit", count_commit)
    try:
        read = await probe_client.get("/api/v1/probe-db/read")
        assert (read.status_code, read.json(), len(commits)) == (200, 0, 0)
        assert (await probe_client.post("/api/v1/probe-db/ok")).status_code == 201
        assert len(commits) == 1
        read = await probe_client.get("/api/v1/probe-db/read")
        assert (read.status_code, read.json(), len(commits)) == (200, 1, 1)
    finally:
        event.remove(AppSession, "after_commit", count_commit)


async def test_timestamps_come_back_as_the_same_instant_in_utc(session: AsyncSession) -> None:
    """Whatever offset a timestamp was written with, every backend answers it aware and in
    UTC, through Core and through the ORM (SQLite keeps no offset; asyncpg decodes UTC)."""
    written = datetime(2031, 5, 6, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    session.add(
        User(email="utc@example.com", password_hash="x", full_name="UTC", created_at=written)
    )
    await session.commit()
    core = await session.scalar(select(User.created_at).where(User.email == "utc@example.com"))
    orm = await session.scalar(
        select(User)
        .where(User.email == "utc@example.com")
        .execution_options(populate_existing=True)
    )
    assert orm is not None
    for value in (core, orm.created_at):
        assert value == written
        assert value is not None
        assert value.tzinfo is UTC
        assert value.hour == 7


async def test_a_wrong_statement_is_a_500_not_a_503(probe_client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        response = await probe_client.get("/api/v1/probe-db/bad-statement")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "no_such_table" not in response.text
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
        "unhandled_error"
    ]
    assert not [entry for entry in logs if entry["event"] == "database_unavailable"]


async def test_an_oserror_outside_the_database_is_a_500_not_a_503(
    probe_client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        response = await probe_client.get("/api/v1/probe-db/missing-file")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert "retry-after" not in response.headers
    assert "no-such-file" not in response.text
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
        "unhandled_error"
    ]
    assert not [entry for entry in logs if entry["event"] == "database_unavailable"]


async def test_an_unreachable_database_is_a_503_without_its_address(
    probe_client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        response = await probe_client.get("/api/v1/probe-db/refused-connection")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.json()["code"] == "service_unavailable"
    assert "127.0.0.1" not in response.text
    assert str(CLOSED_PORT) not in response.text
    warnings = [entry for entry in logs if entry["event"] == "database_unavailable"]
    assert [(w["log_level"], w["error"]) for w in warnings] == [
        ("warning", "ConnectionRefusedError")
    ]


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def _unreachable(cause: OSError) -> DatabaseUnreachable:
    error = DatabaseUnreachable("cannot connect")
    error.__cause__ = cause
    return error


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (_unreachable(ConnectionRefusedError(111, "Connect call failed")), True),
        (_unreachable(OSError("Multiple exceptions: [Errno 111], [Errno 99]")), True),
        (_unreachable(TimeoutError()), True),
        # Raised by anything but the driver (a file, a socket of our own): not an outage.
        (ConnectionRefusedError(111, "Connect call failed"), False),
        (FileNotFoundError(2, "No such file or directory"), False),
        (TimeoutError(), False),
        (sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"), True),
        (_wrapped(Exception("connection was closed"), invalidated=True), True),
        (_wrapped(_DriverError("57P03")), True),  # the database system is starting up
        (_wrapped(_DriverError("57P01")), True),  # terminating connection (admin shutdown)
        (_wrapped(_DriverError("08006")), True),  # connection failure
        (_wrapped(_DriverError("53300")), True),  # too many connections
        (asyncpg.exceptions.CannotConnectNowError("starting up"), True),
        (_wrapped(_DriverError("23505")), False),  # unique violation: the caller's or a bug
        (_wrapped(_DriverError("42P01")), False),  # undefined table: a bug
        (_wrapped(_DriverError("57014")), False),  # a cancelled statement is not an outage
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (sa_exc.ArgumentError("bad argument"), False),
        (ValueError("nothing to do with the database"), False),
    ],
)
def test_which_errors_mean_the_database_is_unavailable(
    error: BaseException, unavailable: bool
) -> None:
    assert is_database_unavailable(error) is unavailable


def test_sqlite_busy_is_unavailable_but_a_sqlite_syntax_error_is_not(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x INTEGER)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as busy:
            waiter.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as syntax:
            waiter.execute("SELEC 1")
    finally:
        holder.close()
        waiter.close()
    assert busy.value.sqlite_errorname == "SQLITE_BUSY"
    assert is_database_unavailable(_wrapped(busy.value)) is True
    assert is_database_unavailable(_wrapped(syntax.value)) is False


async def test_reads_do_not_wait_for_an_open_write_transaction(
    app: FastAPI, session: AsyncSession, settings: Settings
) -> None:
    """GET runs in a read-only session: on SQLite it does not queue for the write lock that
    every writing request takes, on PostgreSQL it skips BEGIN/COMMIT."""
    signed_in = await sign_in(session, settings)
    async with state_of(app)["engine"].connect() as writer:
        await writer.begin()
        await writer.execute(text("UPDATE users SET full_name = full_name"))
        async with make_client(app) as client:
            response = await asyncio.wait_for(
                client.get("/api/v1/tasks", headers=signed_in.headers), timeout=3
            )
        await writer.rollback()
    assert response.status_code == 200
    assert response.json()["total"] == 0


@pytest.mark.needs_services(
    "postgresql",
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
        async with state_of(app)["engine"].connect() as pooled:
            pooled_pid = await pooled.scalar(text("SELECT pg_backend_pid()"))
        # Straight to the server: through PgBouncer it could be handed that very connection.
        outsider = create_test_engine(server_url_of(settings.database_url))
        async with outsider.connect() as connection:
            killed = await connection.scalar(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": pooled_pid}
            )
        await outsider.dispose()
        assert killed is True
        response = await client.get("/api/v1/tasks", headers=signed_in.headers)
    assert response.status_code == 200
