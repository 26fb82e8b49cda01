"""`taskapi serve | migrate | worker`: the one entry point operators use.

Alembic is imported only by the commands that run migrations: each of uvicorn's worker
processes runs the `taskapi` script again to start (multiprocessing's spawn), and so
imports this module, where alembic and mako would cost every worker 8 MB it never uses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from prometheus_client import start_http_server
from pydantic import ValidationError

from taskapi.core.config import Settings, describe_settings_error, get_settings
from taskapi.core.logging import configure_logging
from taskapi.worker import run_worker

GRACEFUL_SHUTDOWN_SECONDS = 30
EXIT_CONFIG_ERROR = 2
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as error:
        for line in describe_settings_error(error):
            sys.stderr.write(f"taskapi: configuration error: {line}\n")
        raise SystemExit(EXIT_CONFIG_ERROR) from None


@contextmanager
def prometheus_multiprocess_dir(settings: Settings) -> Iterator[None]:
    """Several workers each count in their own process; prometheus_client's multiprocess
    mode has each keep its values in files under PROMETHEUS_MULTIPROC_DIR, which /metrics
    sums. The variable must be set before the workers import prometheus_client, and the
    directory must start empty, so each run gets a fresh one (an operator-set one is kept)."""
    if not settings.enable_metrics or settings.workers == 1 or MULTIPROC_ENV in os.environ:
        yield
        return
    directory = tempfile.mkdtemp(prefix="taskapi-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> None:
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; a stop the
    # operator asked for is a clean exit (0), before start-up as after it.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    from taskapi.core import migrations

    migrations.upgrade(settings)
    with prometheus_multiprocess_dir(settings):
        _run_uvicorn(settings)


def _run_uvicorn(settings: Settings) -> None:
    uvicorn.run(
        "taskapi.app:create_served_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level=settings.log_level.lower(),
    )


def work(settings: Settings) -> None:
    """Run background jobs until SIGTERM or SIGINT (docs/worker.md)."""
    from taskapi.core import migrations

    migrations.upgrade(settings)
    if settings.enable_metrics and settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, addr=settings.host)
    asyncio.run(run_worker(settings))


def migrate(settings: Settings, action: str, revision: str | None) -> None:
    from taskapi.core import migrations

    if action == "upgrade":
        migrations.upgrade(settings, revision or "head")
    elif action == "downgrade":
        migrations.downgrade(settings, revision or "-1")
    else:
        migrations.current(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="taskapi", description="Task management REST API")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="apply pending migrations, then serve HTTP")
    migrate_parser = commands.add_parser("migrate", help="change or show the schema version")
    migrate_parser.add_argument("action", choices=["upgrade", "downgrade", "current"])
    migrate_parser.add_argument("revision", nargs="?", help="target (default: head / -1)")
    commands.add_parser(
        "worker", help="apply pending migrations, then run background jobs until SIGTERM"
    )
    args = parser.parse_args(argv)

    settings = _load_settings()
    configure_logging(settings)
    if args.command == "serve":
        serve(settings)
    elif args.command == "worker":
        work(settings)
    else:
        migrate(settings, args.action, args.revision)
