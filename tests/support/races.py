"""A served app for the races: accounts registered through it, verified in its database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from taskapi.auth.models import User
from tests.support.factories import DEFAULT_PASSWORD


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
