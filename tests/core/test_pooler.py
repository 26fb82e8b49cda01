"""DATABASE_POOLER=pgbouncer: the app behind PgBouncer in transaction mode, where each
transaction may run on another server connection. Each test has a PgBouncer of its own with
two server connections, so clients are sure to share and swap them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from taskapi.core import migrations
from taskapi.core.config import Pooler, Settings
from taskapi.core.db import create_engine
from tests.support.apps import AppFactory, SettingsFactory, make_client, state_of
from tests.support.backends import (
    POSTGRES_URL,
    create_postgres_database,
    drop_postgres_database,
)
from tests.support.factories import sign_in
from tests.support.processes import OwnPgBouncer

pytestmark = pytest.mark.needs_services(
    "postgresql", "pgbouncer", reason="PgBouncer in front of the pass's PostgreSQL server"
)

QUERY = text("SELECT CAST(:n AS integer) + 1")


@pytest.fixture
async def direct_url() -> AsyncIterator[str]:
    """A new migrated database, by its URL on the server itself (not through any PgBouncer)."""
    assert POSTGRES_URL is not None
    name = f"taskapi_test_{uuid.uuid4().hex[:12]}"
    url = await create_postgres_database(POSTGRES_URL, name)
    try:
        await migrations.upgrade_async(Settings(_env_file=None, app_env="test", database_url=url))
        yield url
    finally:
        await drop_postgres_database(POSTGRES_URL, name)


async def _the_same_statement_on_another_server_connection(
    bouncer: OwnPgBouncer, make_settings: SettingsFactory, direct_url: str, pooler: Pooler
) -> None:
    """Client A runs a statement and commits; client B takes that server connection (PgBouncer
    reuses the last released one) and keeps it; A runs the same statement again, now on the
    second server connection."""
    settings = make_settings(database_url=bouncer.url(direct_url), database_pooler=pooler)
    engine = create_engine(settings)
    try:
        async with engine.connect() as first, engine.connect() as second:
            assert await first.scalar(QUERY, {"n": 1}) == 2
            await first.commit()
            await second.execute(text("SELECT 1"))
            assert await first.scalar(QUERY, {"n": 2}) == 3
            await first.commit()
            await second.commit()
    finally:
        await engine.dispose()


async def test_without_the_setting_a_cached_statement_is_missing_on_the_next_connection(
    own_pgbouncer: OwnPgBouncer, make_settings: SettingsFactory, direct_url: str
) -> None:
    with pytest.raises(DBAPIError, match=r"prepared statement .* does not exist"):
        await _the_same_statement_on_another_server_connection(
            own_pgbouncer, make_settings, direct_url, "none"
        )


async def test_with_the_setting_the_same_statement_runs_on_any_connection(
    own_pgbouncer: OwnPgBouncer, make_settings: SettingsFactory, direct_url: str
) -> None:
    await _the_same_statement_on_another_server_connection(
        own_pgbouncer, make_settings, direct_url, "pgbouncer"
    )


async def test_concurrent_reads_and_writes_through_two_server_connections_all_succeed(
    own_pgbouncer: OwnPgBouncer,
    app_factory: AppFactory,
    make_settings: SettingsFactory,
    direct_url: str,
) -> None:
    """Reads (read-only sessions) and writes interleaved from 12 clients over 2 server
    connections; then no prepared statement is left on either server connection."""
    settings = make_settings(
        database_url=own_pgbouncer.url(direct_url),
        database_pooler="pgbouncer",
        migration_database_url=direct_url,
    )
    app = await app_factory(settings)
    async with state_of(app)["sessionmaker"]() as session:
        user = await sign_in(session, settings, email="pooled@example.com")
        await session.commit()
    async with make_client(app) as client:
        created = await client.post("/api/v1/tasks", json={"title": "pooled"}, headers=user.headers)
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]

        async def reader() -> list[int]:
            statuses = []
            for _ in range(10):
                got = await client.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
                statuses.append(got.status_code)
                listed = await client.get("/api/v1/tasks", headers=user.headers)
                statuses.append(listed.status_code)
            return statuses

        async def writer(n: int) -> list[int]:
            statuses = []
            for i in range(5):
                changed = await client.post(
                    "/api/v1/tasks", json={"title": f"write {n}-{i}"}, headers=user.headers
                )
                statuses.append(changed.status_code)
            return statuses

        results = await asyncio.gather(*[reader() for _ in range(6)], *map(writer, range(6)))
        statuses = [status for result in results for status in result]
        assert statuses.count(200) == 120
        assert statuses.count(201) == 30
        listed = await client.get("/api/v1/tasks?limit=100", headers=user.headers)
        assert listed.json()["total"] == 31

    engine = create_engine(settings)
    try:
        async with engine.connect() as first, engine.connect() as second:
            left = [
                await connection.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
                for connection in (first, second)
            ]
            pids = {
                await connection.scalar(text("SELECT pg_backend_pid()"))
                for connection in (first, second)
            }
    finally:
        await engine.dispose()
    assert len(pids) == 2
    assert left == [0, 0]
