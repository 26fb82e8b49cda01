"""Test wiring for both backends.

`uv run pytest` uses a throw-away SQLite file. With TEST_DATABASE_URL (a PostgreSQL server
URL) each run creates its own database and drops it afterwards (with TEST_PGBOUNCER=1 the
apps reach it through a PgBouncer of the run's own, in transaction mode); with
TEST_REDIS_URL the app uses that Redis under a key prefix of its own. A configured backend
that cannot be reached stops the run with an error: it is never skipped. Tests that need
more (a backend this pass does not have, a program such as initdb or redis-server) say so
with the `needs_services` marker of tests/support/processes.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from taskapi.app import create_app
from taskapi.core import migrations
from taskapi.core.config import Settings
from tests.support.apps import AppFactory, SettingsFactory, keep_state, make_client, state_of
from tests.support.backends import (
    POSTGRES_URL,
    REDIS_URL,
    DatabaseFactory,
    create_postgres_database,
    create_test_engine,
    database_settings,
    describe,
    drop_postgres_database,
    note_pooled,
    wipe_database,
    wipe_redis,
)
from tests.support.factories import SignedIn, sign_in

if TYPE_CHECKING:
    from tests.support.processes import OwnPgBouncer

pytest_plugins = ["pytester", "tests.support.processes"]


def pytest_report_header() -> list[str]:
    return [describe()]


@pytest.fixture(scope="session")
async def new_database_url(
    tmp_path_factory: pytest.TempPathFactory, shared_pgbouncer: OwnPgBouncer | None
) -> AsyncIterator[DatabaseFactory]:
    """Makes empty databases of the configured backend; all are dropped at the end. Behind
    PgBouncer the URL is the pooled one (`database_settings` knows the direct one)."""
    created: list[str] = []

    async def make() -> str:
        name = f"taskapi_test_{uuid.uuid4().hex[:12]}"
        if POSTGRES_URL is None:
            return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / (name + '.db')}"
        try:
            url = await create_postgres_database(POSTGRES_URL, name)
        except Exception as error:
            pytest.exit(f"TEST_DATABASE_URL={POSTGRES_URL} is unreachable: {error}", returncode=3)
        created.append(name)
        if shared_pgbouncer is None:
            return url
        pooled = shared_pgbouncer.url(url)
        note_pooled(pooled, url)
        return pooled

    yield make
    if POSTGRES_URL is not None:
        for name in created:
            await drop_postgres_database(POSTGRES_URL, name)


@pytest.fixture(scope="session")
async def database_url(new_database_url: DatabaseFactory) -> str:
    url = await new_database_url()
    await migrations.upgrade_async(
        Settings(_env_file=None, app_env="test", **database_settings(url))
    )
    return url


@pytest.fixture(scope="session")
async def cleanup_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_test_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def redis_url() -> str | None:
    if REDIS_URL is None:
        return None
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as error:
        pytest.exit(f"TEST_REDIS_URL={REDIS_URL} is unreachable: {error}", returncode=3)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    return f"taskapi-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def make_settings(database_url: str, redis_url: str | None, redis_prefix: str) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_env": "test",
            "database_url": database_url,
            "redis_url": redis_url,
            "redis_key_prefix": redis_prefix,
            "enable_rate_limiting": False,
            "enable_metrics": False,
            "frontend_url": "http://frontend.test",
            # Tests run the queue themselves (run_jobs), or ask for the embedded worker.
            "worker_enabled": False,
            "worker_poll_interval_seconds": 0.05,
            **overrides,
        }
        return Settings(_env_file=None, **{**database_settings(values["database_url"]), **values})

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
async def app_factory(
    cleanup_engine: AsyncEngine, redis_url: str | None, redis_prefix: str
) -> AsyncIterator[AppFactory]:
    """Starts apps (lifespan included) and wipes every table and Redis key afterwards."""
    started: list[AbstractAsyncContextManager[Any]] = []

    async def start(settings: Settings) -> FastAPI:
        app = create_app(settings)
        context = app.router.lifespan_context(app)
        state = await context.__aenter__()
        started.append(context)
        keep_state(app, state)
        return app

    yield start
    for context in reversed(started):
        await context.__aexit__(None, None, None)
    await wipe_database(cleanup_engine)
    if redis_url is not None:
        await wipe_redis(redis_url, redis_prefix)


@pytest.fixture
async def app(app_factory: AppFactory, settings: Settings) -> FastAPI:
    return await app_factory(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as http:
        yield http


@pytest.fixture
async def alice(session: AsyncSession, settings: Settings) -> SignedIn:
    """A verified, signed-in user; `bob` is another, for isolation tests."""
    return await sign_in(session, settings)


@pytest.fixture
async def bob(session: AsyncSession, settings: Settings) -> SignedIn:
    return await sign_in(session, settings)


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """A session on the app's own database, for arranging rows and checking what was stored."""
    async with state_of(app)["sessionmaker"]() as db_session:
        yield db_session


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
