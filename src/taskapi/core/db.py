"""Engine, sessions and the one-transaction-per-request dependency (`SessionDep`), and the
503 answer for a database that cannot be reached."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any, TypedDict

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Request
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect, ExceptionContext, ExecutionContext
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.expression import SelectBase
from sqlalchemy.util import await_

from taskapi.core.config import Pooler, Settings
from taskapi.core.errors import AppError, ServiceUnavailable, problem_response
from taskapi.core.state import lifespan_state

SQLITE_BUSY_TIMEOUT_MS = 5000
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
# SQLSTATE classes that mean "the server cannot serve now", not "this statement is wrong":
# 08 connection exception, 53 insufficient resources (too many connections, disk full),
# 57P0x operator intervention (shutdown, crash recovery, "the database system is starting up").
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")
# SQLite's equivalents (extended codes such as SQLITE_IOERR_READ included). Plain
# OperationalError is not enough there: SQLite also raises it for a syntax error.
_UNAVAILABLE_SQLITE_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
)

log = structlog.get_logger("taskapi.db")
_AFTER_COMMIT = "taskapi.after_commit"
_READ_ONLY = "taskapi_read_only"
_WRITE_LOCK_PENDING = "taskapi.write_lock_pending"
SAFE_METHODS = frozenset({"GET", "HEAD"})


class DatabaseUnreachable(sa_exc.SQLAlchemyError):
    """The driver could not reach the database server: connection refused, reset or timed
    out, host unknown. Drivers raise these as a bare OSError; the engine re-raises them as
    this, so that only the database's own network errors answer 503, never an OSError from
    anything else a request does."""


def create_engine(settings: Settings) -> AsyncEngine:
    """`hide_parameters`: a database error's message names the statement but not its
    values, which may be password hashes or token hashes, and is logged."""
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url, connect_args={"timeout": 30}, hide_parameters=True
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        event.listen(engine.sync_engine, "before_cursor_execute", _sqlite_lock_before_write)
        event.listen(engine.sync_engine, "commit", _sqlite_transaction_ended)
        event.listen(engine.sync_engine, "rollback", _sqlite_transaction_ended)
    else:
        engine = create_async_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout=10,
            pool_recycle=POOL_RECYCLE_SECONDS,
            connect_args={
                "timeout": 5,
                "command_timeout": 30,
                **pooler_connect_args(settings.database_pooler),
            },
            hide_parameters=True,
        )
        event.listen(engine.sync_engine, "checkin", _note_checkin)
        event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    event.listen(engine.sync_engine, "do_connect", _connect_or_unreachable)
    event.listen(engine.sync_engine, "handle_error", _unreachable_instead_of_os_error)
    return engine


def pooler_connect_args(pooler: Pooler) -> dict[str, Any]:
    """asyncpg's arguments for a connection that may reach another server connection in each
    transaction, as behind PgBouncer in transaction mode (1.18 does not track prepared
    statements). asyncpg names and caches the statements it prepares; a cached one is missing
    on the next server connection ("prepared statement ... does not exist"), and since its
    names count up from 1 in every process, two instances collide on one ("already exists").
    SQLAlchemy's recipe names each statement uniquely, but leaves one named statement behind
    on the server connection per transaction, a leak that grows until the pooler closes it.
    The unnamed statement instead lasts until the next one on that server connection, which
    inside a transaction is this client's own next statement: no collisions and no leak
    (tests/core/test_pooler.py counts what is left on the server connections)."""
    if pooler == "none":
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed_statement,
    }


def _unnamed_statement() -> str:
    return ""


def _connect_or_unreachable(
    dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """Connect as SQLAlchemy would; a network error on the way is DatabaseUnreachable."""
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as error:
        raise DatabaseUnreachable(f"cannot connect: {type(error).__name__}") from error


def _unreachable_instead_of_os_error(context: ExceptionContext) -> BaseException | None:
    """A bare OSError (a TimeoutError included) out of a statement: the connection is gone
    or hangs, so it is discarded and the request sees DatabaseUnreachable."""
    error = context.original_exception
    if not isinstance(error, OSError):
        return None
    context.is_disconnect = True
    return DatabaseUnreachable(f"connection failed: {type(error).__name__}")


POOL_RECYCLE_SECONDS = 1800
PING_AFTER_IDLE_SECONDS = 5.0
_CHECKED_IN_AT = "taskapi.checked_in_at"


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pre-ping, but only a connection that sat idle, when the server may have restarted.

    SQLAlchemy's pool_pre_ping pings on every checkout, and with asyncpg a ping is three
    round trips (BEGIN, the ping, ROLLBACK): measured at 9 % of the CPU of GET /tasks/{id}.
    A connection in steady use proves itself; one that fails mid-request invalidates the
    pool (SQLAlchemy's disconnect handling), so the next checkout connects afresh.
    DisconnectionError makes the pool retry the checkout with a new connection.
    """
    checked_in_at = record.info.get(_CHECKED_IN_AT)
    if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise DisconnectionError("idle connection failed its ping") from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """A read-only session begins deferred: one snapshot, never queued behind writers (WAL).

    Any other transaction takes the write lock with BEGIN IMMEDIATE, and only right before
    its first write (see `_sqlite_lock_before_write`): SQLite has one write lock for the
    whole file, so whatever a request does before writing (authenticate, look a row up,
    verify or hash a password with argon2) must not hold up every other writer. The reads
    before it run in autocommit, each on a fresh snapshot: what PostgreSQL's READ COMMITTED
    gives, so a rule that reads, decides and writes must be one conditional statement (or
    read with FOR UPDATE) on both backends. BEGIN IMMEDIATE, not a deferred BEGIN upgraded
    later: an upgrade fails at once with SQLITE_BUSY when another transaction wrote since
    the read, whereas BEGIN IMMEDIATE waits its turn.
    """
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.info[_WRITE_LOCK_PENDING] = not read_only
    if read_only:
        connection.exec_driver_sql("BEGIN")


def _sqlite_lock_before_write(
    connection: Connection,
    cursor: Any,
    _statement: str,
    _parameters: Any,
    context: ExecutionContext | None,
    _executemany: bool,
) -> None:
    if connection.info.get(_WRITE_LOCK_PENDING) and _needs_write_lock(context):
        connection.info[_WRITE_LOCK_PENDING] = False
        cursor.execute("BEGIN IMMEDIATE")


def _needs_write_lock(context: ExecutionContext | None) -> bool:
    """Everything but a plain SELECT: a write, a SAVEPOINT, raw SQL, and a SELECT ... FOR
    UPDATE (SQLite drops the clause; the write lock is what serializes such a read)."""
    statement = getattr(getattr(context, "compiled", None), "statement", None)
    if not isinstance(statement, SelectBase):
        return True
    return getattr(statement, "_for_update_arg", None) is not None


def _sqlite_transaction_ended(connection: Connection) -> None:
    connection.info.pop(_WRITE_LOCK_PENDING, None)


class AppSession(Session):
    """The synchronous session inside every AsyncSession the app makes: the one that runs
    the actions registered with `after_commit`."""


def create_sessionmaker(
    engine: AsyncEngine,
    *,
    read_only: bool = False,
    pooler: Pooler = "none",
    info: Mapping[str, Any] | None = None,
) -> async_sessionmaker[AsyncSession]:
    """Sessions for writes, or (`read_only`) for GET and HEAD, which never write.

    PostgreSQL runs read-only sessions in autocommit: under READ COMMITTED each statement
    sees a fresh snapshot inside a transaction too, so BEGIN and COMMIT would only cost two
    round trips. Behind a transaction pooler they run in a READ ONLY transaction instead, so
    that the pooler keeps one server connection for the whole session: outside a transaction
    it may hand every statement to another one (a trial here of autocommit reads through
    PgBouncer failed with "prepared statement ... does not exist"). SQLite gives them a
    deferred transaction instead of the write lock. `info` starts every session's `info`
    (core/events.py keeps its consumers there).
    """
    if read_only:
        options: dict[str, Any]
        if engine.dialect.name == "sqlite":
            options = {_READ_ONLY: True}
        elif pooler == "none":
            options = {"isolation_level": "AUTOCOMMIT"}
        else:
            options = {"postgresql_readonly": True}
        engine = engine.execution_options(**options)
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=AppSession,
        info=dict(info or {}),
    )


def after_commit(session: AsyncSession, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` once the session's current transaction has committed.

    `await session.commit()` returns only after the action has run, so in a request it runs
    before the response is sent. If the transaction rolls back, or ends without a commit,
    the action is dropped: nothing it would react to happened. An action must not raise.
    """
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(action)


@event.listens_for(AppSession, "after_commit")
def _run_after_commit(session: Session) -> None:
    # SQLAlchemy calls session events synchronously, inside the greenlet its asyncio layer
    # runs the commit in; await_ hands each coroutine to the event loop and waits for it.
    if session.in_nested_transaction():
        return  # a SAVEPOINT released: the outer transaction may still roll back
    for action in session.info.pop(_AFTER_COMMIT, ()):
        await_(action())


@event.listens_for(AppSession, "after_transaction_end")
def _drop_after_commit(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)


class DatabaseState(TypedDict):
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    read_sessionmaker: async_sessionmaker[AsyncSession]
    """For GET and HEAD: see `create_sessionmaker(read_only=True)`."""


async def check_database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def session_per_request(request: Request) -> AsyncIterator[AsyncSession]:
    """Commit when the handler returns, roll back when it raises.

    Used with `scope="function"` so the commit happens before the response is sent: a
    client never sees a success for a write that has not been committed. A domain error
    raised with `keep_changes` is still committed, then re-raised. A request that never
    touched the database (say, its user came from the cache) has nothing to commit, and
    neither has a GET or HEAD: its read-only session wrote nothing, and closing it ends
    whatever it began, without the commit's events and greenlet hop.
    """
    database = lifespan_state(request.scope, DatabaseState)
    read_only = request.method in SAFE_METHODS
    sessionmaker = database["read_sessionmaker"] if read_only else database["sessionmaker"]
    async with sessionmaker() as session:
        try:
            yield session
        except AppError as error:
            if error.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            if session.in_transaction() and not read_only:
                await session.commit()


SessionDep = Annotated[AsyncSession, Depends(session_per_request, scope="function")]


def is_database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached or cannot serve right now: the
    client may retry later (503), as opposed to a bug in a statement (500).

    Covers a refused, reset or timed-out connection (DatabaseUnreachable, asyncpg's own
    errors during connect), a pool with no free connection (sqlalchemy TimeoutError), a
    connection lost mid-request (SQLAlchemy flags it `connection_invalidated`), and the
    SQLSTATEs and SQLite errors above, raw or wrapped by SQLAlchemy. A bare OSError is not
    among them: it did not come from the database driver (see DatabaseUnreachable).
    """
    if isinstance(error, DatabaseUnreachable | sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig if error.orig is not None else error
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
    sqlite_error = getattr(error, "sqlite_errorname", None)
    return isinstance(sqlite_error, str) and sqlite_error.startswith(_UNAVAILABLE_SQLITE_ERRORS)


def is_foreign_key_violation(error: sa_exc.IntegrityError) -> bool:
    """A row referred to one that does not exist (any more): SQLSTATE 23503 on PostgreSQL,
    SQLite's extended FOREIGNKEY code."""
    return (
        getattr(error.orig, "sqlstate", None) == "23503"
        or getattr(error.orig, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_FOREIGNKEY"
    )


async def _database_error_handler(request: Request, error: Exception) -> Any:
    """503 problem for an unreachable database; anything else goes on to the last-resort 500.
    The body says nothing about the database (no SQL, driver text, host or port); the log
    line keeps the error type for operators."""
    if not is_database_unavailable(error):
        raise error
    cause = error.__cause__ if isinstance(error, DatabaseUnreachable) else None
    log.warning("database_unavailable", error=type(cause or error).__name__, path=request.url.path)
    unavailable = ServiceUnavailable("The service is temporarily unavailable; retry shortly.")
    return problem_response(
        request,
        status=unavailable.status,
        code=unavailable.code,
        detail=unavailable.detail,
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


def install_database_error_handlers(app: FastAPI) -> None:
    for error_class in (sa_exc.SQLAlchemyError, asyncpg.PostgresError):
        app.add_exception_handler(error_class, _database_error_handler)
