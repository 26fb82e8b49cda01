"""A real `taskapi serve` with two workers on a PostgreSQL database of its own: racing
requests then really run in different processes, against real row locks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskapi.auth.models import User
from tests.core.conftest import ServeFactory, serve
from tests.factories import DEFAULT_PASSWORD

__all__ = ["Account", "RaceServer", "race_server", "serve"]


@dataclass
class Account:
    email: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class RaceServer:
    base_url: str
    engine: AsyncEngine
    """On the server's database, to verify accounts and read what was stored."""

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=60)

    async def verified_account(self) -> Account:
        email = f"race-{uuid.uuid4().hex[:12]}@example.com"
        async with self.client() as client:
            response = await client.post(
                "/api/v1/auth/register",
                json={"email": email, "password": DEFAULT_PASSWORD, "full_name": "Racer"},
            )
        assert response.status_code == 201, response.text
        async with self.engine.begin() as connection:
            await connection.execute(update(User).where(User.email == email).values(is_active=True))
        body = response.json()
        return Account(email, body["access_token"], body["refresh_token"])


@pytest.fixture
async def race_server(
    serve: ServeFactory, new_database_url: Callable[[], Any]
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
