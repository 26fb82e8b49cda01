"""The backends a test run uses: SQLite by default, or the PostgreSQL server and Redis named
by TEST_DATABASE_URL and TEST_REDIS_URL. Databases are made and dropped here; rows and keys a
test left behind are wiped here."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskapi.models import Base

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL") or None
REDIS_URL = os.environ.get("TEST_REDIS_URL") or None

DatabaseFactory = Callable[[], Awaitable[str]]
"""`new_database_url()`: the URL of a new, empty database of the configured backend."""


def describe() -> str:
    return (
        f"taskapi backend: {'postgresql' if POSTGRES_URL else 'sqlite'}, "
        f"redis: {'on' if REDIS_URL else 'off (in-process)'}"
    )


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
