"""The app's background work: every job kind, the worker `taskapi serve` embeds, and the
stand-alone `taskapi worker`.

A feature that adds a job kind lists it here; a worker claims only the kinds it knows.
"""

from __future__ import annotations

import asyncio
import signal

from sqlalchemy.ext.asyncio import AsyncEngine

from taskapi.auth.jobs import JOB_KINDS as AUTH_JOB_KINDS
from taskapi.core.config import Settings
from taskapi.core.db import create_engine
from taskapi.core.email import EmailBackend, create_email_backend
from taskapi.core.jobs import PRUNE_FAILED_JOBS, JobKinds
from taskapi.core.models import utcnow
from taskapi.core.worker import Clock, Worker
from taskapi.tasks.jobs import JOB_KINDS as TASK_JOB_KINDS
from taskapi.webhooks.jobs import JOB_KINDS as WEBHOOK_JOB_KINDS

JOB_KINDS = JobKinds.of(PRUNE_FAILED_JOBS, *AUTH_JOB_KINDS, *TASK_JOB_KINDS, *WEBHOOK_JOB_KINDS)


def create_worker(
    settings: Settings,
    engine: AsyncEngine,
    *,
    email: EmailBackend | None = None,
    clock: Clock = utcnow,
) -> Worker:
    return Worker(
        engine=engine,
        settings=settings,
        kinds=JOB_KINDS,
        email=email or create_email_backend(settings),
        clock=clock,
    )


async def run_worker(settings: Settings) -> None:
    """`taskapi worker`: run until SIGTERM or SIGINT, then finish or release running jobs."""
    engine = create_engine(settings)
    worker = create_worker(settings, engine)
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop_signal, worker.request_stop)
    try:
        await worker.run()
    finally:
        await engine.dispose()
