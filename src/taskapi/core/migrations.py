"""Alembic driven from code, so `taskapi serve`, `taskapi migrate` and the tests migrate the
same way. The scripts ship inside the package (taskapi/migrations), so an installed wheel
migrates without the source tree."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config

from taskapi.core.config import Settings

SCRIPT_LOCATION = "taskapi:migrations"
"""A package resource: Alembic finds it wherever taskapi is installed."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings.migrations_url), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings.migrations_url), revision)


def current(settings: Settings) -> None:
    command.current(alembic_config(settings.migrations_url), verbose=False)


async def upgrade_async(settings: Settings, revision: str = "head") -> None:
    """Alembic's env runs its own event loop; keep it off the caller's."""
    await asyncio.to_thread(upgrade, settings, revision)


async def downgrade_async(settings: Settings, revision: str) -> None:
    await asyncio.to_thread(downgrade, settings, revision)
