"""Test wiring for both backends.

`uv run pytest` uses a throw-away SQLite file. With TEST_DATABASE_URL (a PostgreSQL server
URL) each run creates its own database and drops it afterwards; with TEST_REDIS_URL the app
uses that Redis under a key prefix of its own. A configured backend that cannot be reached
stops the run with an error: it is never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from starlette.types import Receive, Scope, Send

from taskapi.app import AppState, create_app
from taskapi.core import migrations
from taskapi.core.config import Settings
from taskapi.models import Base
from tests.factories import SignedIn, sign_in

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL")
REDIS_URL = os.environ.get("TEST_REDIS_URL")

SettingsFactory = Callable[..., Settings]
AppFactory = Callable[..., FastAPI]

_LIFESPAN_STATES: WeakKeyDictionary[FastAPI, AppState] = WeakKeyDictionary()


def state_of(app: FastAPI) -> AppState:
    """The resources the lifespan of a started app created. A test may swap one (the
    password hasher, say): every request after that gets the new one."""
    return _LIFESPAN_STATES[app]


def pytest_report_header() -> list[str]:
    return [
        f"taskapi backend: {'postgresql' if POSTGRES_URL else 'sqlite'}, "
        f"redis: {'on' if REDIS_URL else 'off (in-process)'}"
    ]


async def _create_postgres_database(server_url: str, name: str) -> str:
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        pytest.exit(f"TEST_DATABASE_URL={server_url} is unreachable: {error}", returncode=3)
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _drop_postgres_database(server_url: str, name: str) -> None:
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session")
async def new_database_url(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Callable[[], Any]]:
    """Makes empty databases of the configured backend; all are dropped at the end."""
    created: list[str] = []

    async def make() -> str:
        name = f"taskapi_test_{uuid.uuid4().hex[:12]}"
        if POSTGRES_URL is None:
            return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / (name + '.db')}"
        created.append(name)
        return await _create_postgres_database(POSTGRES_URL, name)

    yield make
    if POSTGRES_URL is not None:
        for name in created:
            await _drop_postgres_database(POSTGRES_URL, name)


@pytest.fixture(scope="session")
async def database_url(new_database_url: Callable[[], Any]) -> str:
    url: str = await new_database_url()
    await migrations.upgrade_async(Settings(_env_file=None, app_env="test", database_url=url))
    return url


@pytest.fixture(scope="session")
async def cleanup_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
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
            **overrides,
        }
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
async def app_factory(
    cleanup_engine: AsyncEngine, redis_url: str | None, redis_prefix: str
) -> AsyncIterator[Callable[[Settings], Any]]:
    """Starts apps (lifespan included) and wipes every table and Redis key afterwards."""
    started: list[Any] = []

    async def start(settings: Settings) -> FastAPI:
        app = create_app(settings)
        context = app.router.lifespan_context(app)
        state = await context.__aenter__()
        started.append(context)
        _LIFESPAN_STATES[app] = state
        return app

    yield start
    for context in reversed(started):
        await context.__aexit__(None, None, None)
    await _wipe_database(cleanup_engine)
    if redis_url is not None:
        await _wipe_redis(redis_url, redis_prefix)


async def _wipe_database(engine: AsyncEngine) -> None:
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608


async def _wipe_redis(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def app(app_factory: Callable[[Settings], Any], settings: Settings) -> FastAPI:
    started: FastAPI = await app_factory(settings)
    return started


def with_lifespan_state(app: FastAPI) -> Callable[[Scope, Receive, Send], Any]:
    """The app as a server runs it after its lifespan started: every request gets a copy
    of the lifespan state (httpx's ASGITransport runs no lifespan)."""
    state = state_of(app)

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return serve


def make_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=with_lifespan_state(app), client=("127.0.0.1", 50000)),
        base_url="http://testserver",
    )


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
