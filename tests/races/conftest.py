"""A real `taskapi serve` with two workers on a PostgreSQL database of its own: racing
requests then really run in different processes, against real row locks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.backends import (
    DatabaseFactory,
    create_test_engine,
    database_env,
    server_url_of,
)
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
            **database_env(database_url),
            "WORKERS": "2",
            # All the racing requests of a test may land in one worker (whichever accepts
            # first) and hold a connection each while queued on a row; the default pool
            # (20 + 10) would then leave none for the embedded job worker or one more request.
            "DATABASE_MAX_OVERFLOW": "30",
            "ENABLE_RATE_LIMITING": "false",
            "ENABLE_METRICS": "false",
        }
    )
    # The barrier and its lock count go straight to the server, not through the pooler.
    engine = create_test_engine(server_url_of(database_url))
    yield RaceServer(base_url=server.base_url, engine=engine)
    await engine.dispose()
