"""A real `taskapi serve` with two workers on a PostgreSQL database of its own: racing
requests then really run in different processes, against real row locks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.backends import DatabaseFactory
from tests.support.processes import ServeFactory
from tests.support.races import RaceServer


@pytest.fixture
async def race_server(
    serve: ServeFactory, new_database_url: DatabaseFactory
) -> AsyncIterator[RaceServer]:
    database_url = await new_database_url()
    server = serve(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "WORKERS": "2",
            "ENABLE_RATE_LIMITING": "false",
            "ENABLE_METRICS": "false",
        }
    )
    engine = create_async_engine(database_url)
    yield RaceServer(base_url=server.base_url, engine=engine)
    await engine.dispose()
