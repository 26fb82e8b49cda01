"""The backends a test run uses: SQLite by default, or the PostgreSQL server and Redis named
by TEST_DATABASE_URL and TEST_REDIS_URL; with TEST_PGBOUNCER=1 the apps reach that server
through a PgBouncer in transaction mode, as a scaled-out deployment does. Databases are made
and dropped here; rows and keys a test left behind are wiped here."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskapi.core.db import pooler_connect_args
from taskapi.models import Base

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL") or None
REDIS_URL = os.environ.get("TEST_REDIS_URL") or None
PGBOUNCER = POSTGRES_URL is not None and os.environ.get("TEST_PGBOUNCER") == "1"

_direct_urls: dict[str, str] = {}
"""Database URL through PgBouncer -> the same database on the server, for what this run made."""

DatabaseFactory = Callable[[], Awaitable[str]]
"""`new_database_url()`: the URL of a new, empty database of the configured backend."""


def describe() -> str:
    backend = "sqlite"
    if POSTGRES_URL:
        backend = "postgresql through pgbouncer" if PGBOUNCER else "postgresql"
    return f"taskapi backend: {backend}, redis: {'on' if REDIS_URL else 'off (in-process)'}"


def note_pooled(pooled_url: str, direct_url: str) -> None:
    _direct_urls[pooled_url] = direct_url


def server_url_of(url: str) -> str:
    """Database `url` on the server itself, bypassing PgBouncer if it goes through it."""
    return _direct_urls.get(url, url)


def database_settings(url: str) -> dict[str, Any]:
    """The settings of an app on database `url`: behind PgBouncer, the pooler setting, and
    migrations straight to the server."""
    direct = _direct_urls.get(url)
    if direct is None:
        return {"database_url": url}
    return {"database_url": url, "database_pooler": "pgbouncer", "migration_database_url": direct}


def database_env(url: str) -> dict[str, str]:
    """`database_settings` as the environment of a `taskapi serve` process."""
    return {name.upper(): value for name, value in database_settings(url).items()}


def create_test_engine(url: str) -> AsyncEngine:
    """An engine for a test's own queries on database `url`, fit for PgBouncer when `url` goes
    through it."""
    direct = _direct_urls.get(url)
    connect_args = pooler_connect_args("pgbouncer" if direct else "none")
    return create_async_engine(url, connect_args=connect_args)


async def create_postgres_database(server_url: str, name: str) -> str:
    """Creates database `name` on the server and returns its URL (password kept)."""
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(server_url: str, name: str) -> None:
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def wipe_database(engine: AsyncEngine) -> None:
    """Empties every table, so the next test starts from a migrated, empty database."""
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608


async def redis_bytes(client: Redis, key: str) -> bytes | None:
    """The value under `key` as stored: the app's clients never decode, so bytes (or None)."""
    value = await client.get(key)
    assert value is None or isinstance(value, bytes), value
    return value


async def wipe_redis(url: str, prefix: str) -> None:
    """Deletes the keys under one test's prefix; other users of that Redis are untouched."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
