"""What a 500 writes to the log: a bounded traceback, never a password, token or hash.

A trigger makes the database refuse the UPDATE of a password reset, the realistic failure
of a request that carries a new password and a reset token: the frames on the way hold
both and the new hash, and the failing statement's parameters hold the hash.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.security import hash_token
from tests.support.apps import SettingsFactory, make_client, state_of
from tests.support.factories import default_password_hash

NEW_PASSWORD = "Leak3d!Passw0rd-If-Logged"
MAX_LOG_BYTES = 20_000
ARGON2_HASH = re.compile(r"\$argon2id\$v=\d+\$m=")

_REFUSE_USER_UPDATES = {
    "postgresql": (
        [
            """CREATE FUNCTION refuse_user_update() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'forced failure'; END $$""",
            """CREATE TRIGGER refuse_user_update BEFORE UPDATE ON users
               FOR EACH ROW EXECUTE FUNCTION refuse_user_update()""",
        ],
        ["DROP FUNCTION refuse_user_update() CASCADE"],
    ),
    "sqlite": (
        [
            """CREATE TRIGGER refuse_user_update BEFORE UPDATE ON users
               BEGIN SELECT RAISE(ABORT, 'forced failure'); END""",
        ],
        ["DROP TRIGGER refuse_user_update"],
    ),
}


@asynccontextmanager
async def refused_user_updates(engine: AsyncEngine) -> AsyncIterator[None]:
    create, drop = _REFUSE_USER_UPDATES[engine.dialect.name]
    async with engine.begin() as connection:
        for statement in create:
            await connection.execute(text(statement))
    try:
        yield
    finally:
        async with engine.begin() as connection:
            for statement in drop:
                await connection.execute(text(statement))


@pytest.mark.parametrize("environment", ["production", "development"])
async def test_a_500_logs_no_password_token_or_hash(
    make_settings: SettingsFactory,
    app_factory: Callable[[Settings], Any],
    cleanup_engine: AsyncEngine,
    capfd: pytest.CaptureFixture[str],
    environment: str,
) -> None:
    app = await app_factory(
        make_settings(app_env=environment, jwt_secret_key="k" * 40, email_backend="console")
    )
    reset_token = secrets.token_hex(32)
    async with state_of(app)["sessionmaker"]() as session:
        session.add(
            User(
                email="leak@example.com",
                password_hash=default_password_hash(),
                full_name="Leak Check",
                is_active=True,
                password_reset_token_hash=hash_token(reset_token),
                password_reset_expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        await session.commit()
    capfd.readouterr()

    async with refused_user_updates(cleanup_engine), make_client(app) as client:
        response = await client.post(
            "/api/v1/auth/reset-password",
            json={"token": reset_token, "new_password": NEW_PASSWORD},
        )

    assert response.status_code == 500, response.text
    assert response.json()["code"] == "internal_error"
    out, err = capfd.readouterr()
    log = out + err
    assert "unhandled_error" in log
    assert "forced failure" in log, "the traceback itself must still be logged"
    assert NEW_PASSWORD not in log
    assert reset_token not in log
    assert hash_token(reset_token) not in log
    assert default_password_hash() not in log
    assert ARGON2_HASH.search(log) is None
    assert len(log.encode()) < MAX_LOG_BYTES
