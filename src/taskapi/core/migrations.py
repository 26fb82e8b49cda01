"""Alembic driven from code, so `taskapi serve` and the tests migrate the same way."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from taskapi.core.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings.database_url), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings.database_url), revision)


def current(settings: Settings) -> None:
    command.current(alembic_config(settings.database_url), verbose=False)


async def upgrade_async(settings: Settings, revision: str = "head") -> None:
    """Alembic's env runs its own event loop; keep it off the caller's."""
    await asyncio.to_thread(upgrade, settings, revision)


async def downgrade_async(settings: Settings, revision: str) -> None:
    await asyncio.to_thread(downgrade, settings, revision)
