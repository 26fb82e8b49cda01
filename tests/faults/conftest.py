"""Servers a fault test owns, so it may stop and restart them: a PostgreSQL cluster made with
initdb in a temporary directory, on a free port. The machine's shared PostgreSQL and Redis
are never touched. A missing binary fails the test: a fault test that cannot run is a
failure, not a skip."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.core.conftest import free_port, own_redis, serve

__all__ = ["OwnPostgres", "own_postgres", "own_redis", "serve"]

PG_TIMEOUT_SECONDS = 60


def postgres_bin(name: str) -> str:
    """The newest installed PostgreSQL's `name` (initdb, pg_ctl): Debian keeps them out of PATH."""
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    found = candidates[-1] if candidates else shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed; the fault tests need it")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres OS user then."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("runuser is not installed; needed to run PostgreSQL as postgres")
    return [runuser, "-u", "postgres", "--", *command]


@dataclass
class OwnPostgres:
    """A throw-away cluster: trust auth for user postgres on 127.0.0.1 only."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def server_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        result = subprocess.run(  # noqa: S603 (fixed argument lists, no shell)
            _as_postgres(list(command)),
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT_SECONDS * 2,
            check=False,
        )
        if result.returncode != 0:
            log = self.directory / "server.log"
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{server_log}"
            )

    def init(self) -> None:
        self._run(
            postgres_bin("initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            postgres_bin("pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.directory / "server.log"),
            "--wait",
            "--timeout",
            str(PG_TIMEOUT_SECONDS),
            "--options",
            options,
            "start",
        )

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, everything committed is kept."""
        self._run(
            postgres_bin("pg_ctl"),
            "--pgdata",
            str(self.data),
            "--mode",
            "fast",
            "--wait",
            "--timeout",
            str(PG_TIMEOUT_SECONDS),
            "stop",
        )

    async def create_database(self, name: str = "taskapi") -> str:
        admin = create_async_engine(self.server_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await admin.dispose()
        return self.url_of(name)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    directory = Path(tempfile.mkdtemp(prefix="taskapi-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user="postgres", group="postgres")
    cluster = OwnPostgres(directory=directory)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
