"""Job kinds for testing the queue, whose effects land in a table of their own, and a worker
process that runs them (`python -m tests.support.job_kinds`), for tests that kill workers.

Every effect row names the job and the attempt that wrote it: a job whose effect happened
exactly once has exactly one row.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskapi.core.config import Settings
from taskapi.core.db import create_engine
from taskapi.core.email import ConsoleEmailBackend
from taskapi.core.jobs import Job, JobContext, JobKind, JobKinds, PermanentJobError, RetryPolicy
from taskapi.core.worker import Worker

metadata = MetaData()
job_effects = Table(
    "test_job_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(100)),
)


class Note(BaseModel):
    name: str
    fail_times: int = 0
    """Fail this many attempts before succeeding."""
    hang_file: str | None = None
    """Attempt 1 touches this file, then hangs: the test kills the worker meanwhile."""


async def record(context: JobContext, note: Note) -> None:
    if note.hang_file is not None and context.attempt == 1:
        Path(note.hang_file).touch()  # noqa: ASYNC240 (a marker file for the test)
        await asyncio.sleep(3600)
    if context.attempt <= note.fail_times:
        raise RuntimeError(f"planned failure {context.attempt} of {note.fail_times}")
    worker = await context.session.scalar(select(Job.locked_by).where(Job.id == context.job_id))
    await context.session.execute(
        insert(job_effects).values(name=note.name, attempt=context.attempt, worker=worker)
    )


async def refuse(_context: JobContext, _note: Note) -> None:
    raise PermanentJobError("this can never work")


QUICK_RETRY = RetryPolicy(delays=(timedelta(seconds=10), timedelta(seconds=60)))

RECORD = JobKind(
    name="test.record",
    payload=Note,
    handler=record,
    retry=QUICK_RETRY,
    timeout=timedelta(seconds=5),
    lease=timedelta(seconds=6),
)
REFUSE = JobKind(name="test.refuse", payload=Note, handler=refuse, retry=QUICK_RETRY)
TEST_KINDS = JobKinds.of(RECORD, REFUSE)


async def create_effects_table(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)


async def effects_by_worker(engine: AsyncEngine) -> list[tuple[str, int, str | None]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(job_effects.c.name, job_effects.c.attempt, job_effects.c.worker)
        )
        return [(row.name, row.attempt, row.worker) for row in rows]


async def effects(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(job_effects.c.name, job_effects.c.attempt).order_by(job_effects.c.id)
        )
        return [(row.name, row.attempt) for row in rows]


async def _main() -> None:
    """A worker of the test kinds on DATABASE_URL, until SIGTERM."""
    import signal

    settings = Settings()
    engine = create_engine(settings)
    worker = Worker(
        engine=engine,
        settings=settings,
        kinds=TEST_KINDS,
        email=ConsoleEmailBackend(),
        name=os.environ.get("TEST_WORKER_NAME"),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.request_stop)
    sys.stderr.write("test worker running\n")
    sys.stderr.flush()
    try:
        await worker.run()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_main())
