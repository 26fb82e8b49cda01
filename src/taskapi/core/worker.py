"""The worker: claims due jobs under a lease, runs their handlers, retries with backoff,
gives up after the last attempt, and reports the queue to Prometheus.

Any number of workers on any hosts share one PostgreSQL queue: a claim is one UPDATE of
rows chosen `FOR UPDATE SKIP LOCKED`, so two workers never claim the same job, and it
stamps the job with the worker's name and a lease (`locked_until`). A worker that dies
holding a job leaves it to be claimed again once the lease has passed. Completing a job is
conditional on the claim still being the worker's own (same name, same attempt), in the
handler's transaction: a worker whose lease ran out and whose job was taken over cannot
complete it, so the job's database effects commit exactly once.

On SQLite one worker runs at a time: each takes a lock file beside the database first, so
several `taskapi serve` processes (WORKERS > 1) run one embedded worker between them.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from taskapi.core.config import Settings
from taskapi.core.db import create_sessionmaker
from taskapi.core.email import EmailBackend
from taskapi.core.jobs import (
    Job,
    JobContext,
    JobKind,
    JobKinds,
    JobStatus,
    PermanentJobError,
    upsert,
)
from taskapi.core.models import UTCDateTime, new_id, utcnow

log = structlog.get_logger("taskapi.worker")

Clock = Callable[[], datetime]
MAX_ERROR_LENGTH = 1000
POLL_BACKOFF_MAX_SECONDS = 30.0
SHUTDOWN_GRACE_SECONDS = 30.0
UNKNOWN_KIND = "unknown"
QUEUE_STATES = ("waiting", "scheduled", "running", "failed")

JOB_FAILURES = Counter(
    "job_failures_total",
    "Job attempts that failed, by kind; outcome retry (it runs again later) or failed "
    "(out of attempts, kept as failed).",
    labelnames=["kind", "outcome"],
)
JOBS_COMPLETED = Counter(
    "jobs_completed_total", "Jobs whose handler succeeded, by kind.", labelnames=["kind"]
)
# Read from the database at scrape time by whichever process serves /metrics: every process
# sees the same queue, so with several processes the latest reading is the right one.
QUEUE_DEPTH = Gauge(
    "job_queue_depth",
    "Jobs in the queue by kind and state: waiting (due, not yet claimed), scheduled (due "
    "later), running (claimed under a lease), failed (out of attempts).",
    labelnames=["kind", "state"],
    multiprocess_mode="livemostrecent",
)
QUEUE_LAG = Gauge(
    "job_queue_lag_seconds",
    "How long the oldest waiting job has been due; 0 when none waits.",
    multiprocess_mode="livemostrecent",
)


def declare_job_metrics(kinds: JobKinds) -> None:
    """Export the job counters of every kind from the start, at 0."""
    for kind in kinds.names:
        JOBS_COMPLETED.labels(kind)
        for outcome in ("retry", "failed"):
            JOB_FAILURES.labels(kind, outcome)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


class Worker:
    """Runs jobs of `kinds` until `request_stop()`: `run()` for a long-lived worker,
    `run_until_idle()` to work through what is due now and return."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        kinds: JobKinds,
        email: EmailBackend,
        clock: Clock = utcnow,
        name: str | None = None,
        shutdown_grace: float = SHUTDOWN_GRACE_SECONDS,
    ) -> None:
        self.kinds = kinds
        self.name = name or _worker_name()
        self._settings = settings
        self._email = email
        self._clock = clock
        self._sessionmaker = create_sessionmaker(engine)
        self._read_sessionmaker = create_sessionmaker(
            engine, read_only=True, pooler=settings.database_pooler
        )
        self._concurrency = settings.worker_concurrency
        self._poll_interval = settings.worker_poll_interval_seconds
        self._shutdown_grace = shutdown_grace
        self._running: dict[asyncio.Task[None], ClaimedJob] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lock = _SingleWorkerLock.for_database(settings)
        declare_job_metrics(kinds)

    def request_stop(self) -> None:
        """Stop claiming; `run()` then lets running jobs finish (up to a grace period),
        releases the ones that did not, and returns."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        log.info("worker_started", worker=self.name, kinds=self.kinds.names)
        failures = 0
        periodic_scheduled = False
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    if self._lock is not None and not self._lock.acquire():
                        await self._sleep(self._poll_interval)
                        continue
                    if not periodic_scheduled:
                        await self.schedule_periodic()
                        periodic_scheduled = True
                    free = self._concurrency - len(self._running)
                    claimed = await self._poll(free) if free > 0 else 0
                    failures = 0
                except Exception as error:
                    failures += 1
                    delay = min(self._poll_interval * 2**failures, POLL_BACKOFF_MAX_SECONDS)
                    log.warning(
                        "worker_poll_failed",
                        worker=self.name,
                        error_type=type(error).__name__,
                        error=str(error),
                        retry_in_seconds=delay,
                    )
                    await self._sleep(delay)
                    continue
                # Fewer than asked for: nothing else is due, look again after the interval.
                # Every slot taken: look again as soon as a job finishes.
                await self._sleep(self._poll_interval if claimed < free else None)
        finally:
            await self._drain()
            if self._lock is not None:
                self._lock.release()
            log.info("worker_stopped", worker=self.name)

    async def run_until_idle(self) -> int:
        """Run every job that is due, and those that become due meanwhile, then return
        how many ran. For operators' one-off runs and for tests."""
        ran = 0
        while True:
            free = self._concurrency - len(self._running)
            claimed = await self._poll(free) if free > 0 else 0
            ran += claimed
            if not self._running:
                if claimed == 0:
                    return ran
                continue
            await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)

    async def schedule_periodic(self) -> None:
        """Make sure each periodic kind has its one job (due now when it is new)."""
        now = self._clock()
        async with self._sessionmaker() as session:
            for kind in self.kinds.periodic:
                values = {
                    "id": new_id(),
                    "kind": kind.name,
                    "unique_key": kind.name,
                    "payload": {},
                    "status": JobStatus.QUEUED.value,
                    "attempts": 0,
                    "run_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                await session.execute(
                    upsert(session, values).on_conflict_do_nothing(index_elements=["unique_key"])
                )
            await session.commit()

    async def _sleep(self, seconds: float | None) -> None:
        """Until `seconds` pass (None: no limit), a job finishes, or a stop is requested."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _poll(self, limit: int) -> int:
        """Claim up to `limit` due jobs and start them; how many were claimed."""
        now = self._clock()
        due = self._due(now)
        async with self._read_sessionmaker() as reader:
            # A read first: on SQLite a claim takes the database's write lock, which an idle
            # worker polling every second must not do.
            if await reader.scalar(select(Job.id).where(due).limit(1)) is None:
                return 0
        chosen = (
            select(Job.id)
            .where(due)
            .order_by(Job.run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        lease_until = case(
            {
                kind.name: literal(now + kind.lease_duration, UTCDateTime())
                for kind in self.kinds.kinds.values()
            },
            value=Job.kind,
        )
        async with self._sessionmaker() as session:
            rows = (
                await session.execute(
                    update(Job)
                    .where(Job.id.in_(chosen))
                    .values(
                        status=JobStatus.RUNNING.value,
                        attempts=Job.attempts + 1,
                        locked_by=self.name,
                        locked_until=lease_until,
                        updated_at=now,
                    )
                    .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.created_at)
                    .execution_options(synchronize_session=False)
                )
            ).all()
            await session.commit()
        for row in rows:
            job = ClaimedJob(
                id=row.id,
                kind=row.kind,
                payload=row.payload,
                attempts=row.attempts,
                created_at=row.created_at,
            )
            task = asyncio.create_task(self._run(job), name=f"job {job.kind} {job.id}")
            self._running[task] = job
            task.add_done_callback(self._finished)
        return len(rows)

    def _due(self, now: datetime) -> ColumnElement[bool]:
        return and_(
            Job.kind.in_(self.kinds.names),
            or_(
                and_(Job.status == JobStatus.QUEUED.value, Job.run_at <= now),
                and_(Job.status == JobStatus.RUNNING.value, Job.locked_until <= now),
            ),
        )

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()

    def _claim_of(self, job: ClaimedJob) -> ColumnElement[bool]:
        """The job as this worker claimed it: gone once replaced, cancelled, or taken over
        by another worker after the lease."""
        return and_(
            Job.id == job.id,
            Job.status == JobStatus.RUNNING.value,
            Job.locked_by == self.name,
            Job.attempts == job.attempts,
        )

    async def _run(self, job: ClaimedJob) -> None:
        kind = self.kinds[job.kind]
        bound = log.bind(worker=self.name, job_id=str(job.id), kind=job.kind, attempt=job.attempts)
        if job.attempts > kind.retry.max_attempts:
            await self._record_failure(
                job, kind, "its last attempt never finished (the worker stopped)", final=True
            )
            return
        try:
            async with self._sessionmaker() as session:
                now = self._clock()
                context = JobContext(
                    session=session,
                    settings=self._settings,
                    email=self._email,
                    now=now,
                    job_id=job.id,
                    attempt=job.attempts,
                )
                try:
                    payload = kind.payload.model_validate(job.payload)
                except ValidationError as error:
                    raise PermanentJobError(f"invalid payload: {error}") from error
                async with asyncio.timeout(kind.timeout.total_seconds()):
                    await kind.handler(context, payload)
                if await self._complete(session, job, kind, now):
                    await session.commit()
                    JOBS_COMPLETED.labels(kind.name).inc()
                    bound.debug("job_completed")
                else:
                    await session.rollback()
                    bound.warning("job_claim_lost", detail="replaced, cancelled or taken over")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._record_failure(
                job,
                kind,
                f"{type(error).__name__}: {error}",
                final=isinstance(error, PermanentJobError),
            )

    async def _complete(
        self, session: AsyncSession, job: ClaimedJob, kind: JobKind[Any], now: datetime
    ) -> bool:
        """Delete the job (a periodic one waits for its next run), if the claim is still ours."""
        if kind.every is None:
            done = await session.execute(delete(Job).where(self._claim_of(job)).returning(Job.id))
        else:
            done = await session.execute(
                update(Job)
                .where(self._claim_of(job))
                .values(**_requeued(now + kind.every, now), attempts=0, last_error=None)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
        return done.first() is not None

    async def _record_failure(
        self, job: ClaimedJob, kind: JobKind[Any], error: str, *, final: bool
    ) -> None:
        now = self._clock()
        error = error[:MAX_ERROR_LENGTH]
        retry_at = (
            None
            if final
            else kind.retry.next_run(attempts=job.attempts, created_at=job.created_at, now=now)
        )
        values: dict[str, Any]
        if retry_at is not None:
            values = _requeued(retry_at, now)
        elif kind.every is not None:
            values = {**_requeued(now + kind.every, now), "attempts": 0}
        else:
            values = {"status": JobStatus.FAILED.value, "locked_by": None, "locked_until": None}
        values["last_error"] = error
        values["updated_at"] = now
        outcome = "retry" if retry_at is not None else "failed"
        JOB_FAILURES.labels(kind.name, outcome).inc()
        report = log.warning if retry_at is not None else log.error
        report(
            "job_failed",
            worker=self.name,
            job_id=str(job.id),
            kind=kind.name,
            attempt=job.attempts,
            error=error,
            outcome=outcome,
            retry_at=retry_at.isoformat() if retry_at is not None else None,
        )
        try:
            async with self._sessionmaker() as session:
                await session.execute(
                    update(Job)
                    .where(self._claim_of(job))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
        except Exception as store_error:
            # The lease runs out and the job is taken again: the attempt still counts.
            log.warning(
                "job_failure_not_stored",
                worker=self.name,
                job_id=str(job.id),
                error_type=type(store_error).__name__,
            )

    async def _drain(self) -> None:
        """Give running jobs the grace period, then cancel the rest and hand them back."""
        if not self._running:
            return
        running = dict(self._running)
        _done, pending = await asyncio.wait(set(running), timeout=self._shutdown_grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            await self._release(running[task])

    async def _release(self, job: ClaimedJob) -> None:
        """Back to the queue at once, the interrupted attempt not counted."""
        now = self._clock()
        try:
            async with self._sessionmaker() as session:
                await session.execute(
                    update(Job)
                    .where(self._claim_of(job))
                    .values(**_requeued(now, now), attempts=Job.attempts - 1)
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
            log.info("job_released", worker=self.name, job_id=str(job.id), kind=job.kind)
        except Exception as error:
            log.warning(
                "job_release_failed",
                worker=self.name,
                job_id=str(job.id),
                error_type=type(error).__name__,
            )


def _requeued(run_at: datetime, now: datetime) -> dict[str, Any]:
    return {
        "status": JobStatus.QUEUED.value,
        "run_at": run_at,
        "locked_by": None,
        "locked_until": None,
        "updated_at": now,
    }


def _worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _SingleWorkerLock:
    """An exclusive lock on a file beside the SQLite database, held while a worker runs."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    @classmethod
    def for_database(cls, settings: Settings) -> _SingleWorkerLock | None:
        if not settings.is_sqlite:
            return None
        database = make_url(settings.database_url).database
        if not database or database == ":memory:":
            return None
        return cls(Path(database).with_name(Path(database).name + ".worker-lock"))

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


async def collect_queue_metrics(engine: AsyncEngine, kinds: JobKinds, now: datetime) -> None:
    """Set the queue gauges from the jobs table, every known kind and state included."""
    state = case(
        (Job.status == JobStatus.RUNNING.value, "running"),
        (Job.status == JobStatus.FAILED.value, "failed"),
        (Job.run_at <= now, "waiting"),
        else_="scheduled",
    ).label("state")
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(Job.kind, state, func.count(), func.min(Job.run_at)).group_by(
                    Job.kind, state
                )
            )
        ).all()
    depth = {
        (kind, queue_state): 0
        for kind in [*kinds.names, UNKNOWN_KIND]
        for queue_state in QUEUE_STATES
    }
    oldest_due: datetime | None = None
    for kind, queue_state, count, earliest in rows:
        label = kind if kind in kinds else UNKNOWN_KIND
        depth[(label, queue_state)] = depth.get((label, queue_state), 0) + count
        if queue_state == "waiting" and (oldest_due is None or earliest < oldest_due):
            oldest_due = earliest
    for (kind, queue_state), count in depth.items():
        QUEUE_DEPTH.labels(kind, queue_state).set(count)
    lag = timedelta(0) if oldest_due is None else max(now - oldest_due, timedelta(0))
    QUEUE_LAG.set(lag.total_seconds())
