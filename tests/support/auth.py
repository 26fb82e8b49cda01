"""Auth helpers: a mailbox read from the console email backend's log, API shortcuts, and
reads of what the database stored."""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import RefreshToken, User
from taskapi.core.security import PasswordHasher, hash_token
from tests.support.jobs import run_jobs

API = "/api/v1"
STRONG_PASSWORD = "Str0ng!Passw0rd"
OTHER_PASSWORD = "N3w!Passw0rd"
USER_FIELDS = {"id", "email", "full_name", "is_active", "created_at", "updated_at"}
TOKEN_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in", "user"}
_LINK = re.compile(r"^http://frontend\.test/(verify-email|reset-password)\?token=([0-9a-f]{64})$")


@dataclass
class Mailbox:
    """Messages the console backend logged: the real development backend, read back after
    running the queued jobs that send them."""

    app: FastAPI
    logs: list[MutableMapping[str, Any]]

    async def messages(self, to: str | None = None) -> list[MutableMapping[str, Any]]:
        await run_jobs(self.app)
        return [
            entry
            for entry in self.logs
            if entry["event"] == "email" and (to is None or entry["to"] == to)
        ]

    async def token(self, to: str, kind: str) -> str:
        """The token of the latest `kind` link ("verify-email" / "reset-password") sent to `to`."""
        for entry in reversed(await self.messages(to)):
            match = _LINK.match(entry["link"])
            assert match is not None, entry["link"]
            if match.group(1) == kind:
                assert entry["link"] in entry["body"]
                return match.group(2)
        raise AssertionError(f"no {kind} email to {to}")


class CountingHasher(PasswordHasher):
    """The real hasher, counting the argon2 work it is asked to do."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.hashes = 0
        self.verifications = 0
        self.dummy_verifications = 0

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return await super().hash(password)

    async def verify(self, password: str, password_hash: str) -> bool:
        self.verifications += 1
        return await super().verify(password, password_hash)

    async def verify_dummy(self, password: str) -> None:
        self.dummy_verifications += 1
        await super().verify_dummy(password)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient,
    *,
    email: str = "ada@example.com",
    password: str = STRONG_PASSWORD,
    full_name: str = "Ada Lovelace",
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/auth/register",
        json={"email": email, "password": password, "full_name": full_name},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    client: httpx.AsyncClient, *, email: str = "ada@example.com", password: str = STRONG_PASSWORD
) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def stored_user(session: AsyncSession, email: str) -> User | None:
    """The row as committed now. Ends the transaction at once, so the test holds no
    connection in an open transaction while the app runs."""
    user = await session.scalar(
        select(User).where(User.email == email).execution_options(populate_existing=True)
    )
    await session.commit()
    return user


async def stored_password_hash(session: AsyncSession, email: str) -> str:
    """The password hash of an account that must exist."""
    user = await stored_user(session, email)
    assert user is not None, email
    return user.password_hash


async def stored_refresh_tokens(session: AsyncSession, user_id: uuid.UUID) -> list[RefreshToken]:
    rows = list(
        await session.scalars(
            select(RefreshToken)
            .where(RefreshToken.user_id == user_id)
            .order_by(RefreshToken.created_at, RefreshToken.id)
            .execution_options(populate_existing=True)
        )
    )
    await session.commit()
    return rows


async def stored_token(session: AsyncSession, refresh_token: str) -> RefreshToken:
    row = await session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_token(refresh_token))
        .execution_options(populate_existing=True)
    )
    await session.commit()
    assert row is not None
    return row


async def change_user(session: AsyncSession, email: str, **values: Any) -> None:
    await session.execute(update(User).where(User.email == email).values(**values))
    await session.commit()
