"""The job queue on the configured backend: transactional enqueue, claims, retries with
backoff, failure for good, leases, keys, periodic jobs, graceful stop and metrics.

Time is a clock the test moves (never waited for); effects land in test_job_effects.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from structlog.testing import capture_logs

from taskapi.core.config import Settings
from taskapi.core.db import create_engine, create_sessionmaker
from taskapi.core.email import ConsoleEmailBackend
from taskapi.core.jobs import (
    Job,
    JobContext,
    JobKind,
    JobKinds,
    JobStatus,
    NoPayload,
    RetryPolicy,
    cancel,
    enqueue,
)
from taskapi.core.models import utcnow
from taskapi.core.worker import Worker, collect_queue_metrics
from tests.support.apps import SettingsFactory, state_of
from tests.support.backends import POSTGRES_URL
from tests.support.job_kinds import (
    RECORD,
    REFUSE,
    TEST_KINDS,
    Note,
    create_effects_table,
    effects,
    job_effects,
)
from tests.support.jobs import FakeClock, wait_until


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = state_of(app)["engine"]
    return engine


@pytest.fixture
async def effects_table(engine: AsyncEngine) -> AsyncIterator[None]:
    await create_effects_table(engine)
    yield
    async with engine.begin() as connection:
        await connection.execute(delete(job_effects))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_worker(
    engine: AsyncEngine, settings: Settings, clock: FakeClock, effects_table: None
) -> Any:
    def make(kinds: JobKinds = TEST_KINDS, **options: Any) -> Worker:
        return Worker(
            engine=engine,
            settings=options.pop("settings", settings),
            kinds=kinds,
            email=ConsoleEmailBackend(),
            **{"clock": clock, **options},
        )

    return make


async def queue(engine: AsyncEngine, kind: JobKind[Any], payload: Any, **options: Any) -> None:
    async with create_sessionmaker(engine)() as session:
        await enqueue(session, kind, payload, **options)
        await session.commit()


async def stored_jobs(engine: AsyncEngine) -> list[Job]:
    async with create_sessionmaker(engine)() as session:
        return list(await session.scalars(select(Job).order_by(Job.created_at, Job.id)))


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_job_exists_once_its_transaction_commits_and_never_if_it_rolls_back(
    engine: AsyncEngine, session: AsyncSession, make_worker: Any
) -> None:
    await enqueue(session, RECORD, Note(name="rolled back"))
    await session.rollback()
    assert await stored_jobs(engine) == []

    await enqueue(session, RECORD, Note(name="kept"))
    await session.commit()
    [job] = await stored_jobs(engine)
    assert (job.kind, job.status, job.attempts, job.payload) == (
        "test.record",
        JobStatus.QUEUED,
        0,
        {"name": "kept", "fail_times": 0, "hang_file": None},
    )
    assert await make_worker().run_until_idle() == 1
    assert await effects(engine) == [("kept", 1)]
    assert await stored_jobs(engine) == []
    assert await make_worker().run_until_idle() == 0


async def test_a_job_waits_for_its_time(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock
) -> None:
    await queue(engine, RECORD, Note(name="later"), run_at=clock.now + timedelta(hours=1))
    assert await make_worker().run_until_idle() == 0
    clock.advance(minutes=59)
    assert await make_worker().run_until_idle() == 0
    clock.advance(minutes=1)
    assert await make_worker().run_until_idle() == 1
    assert await effects(engine) == [("later", 1)]


async def test_a_failing_job_is_retried_with_backoff_then_failed_for_good(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock
) -> None:
    retries = counted("job_failures_total", kind="test.record", outcome="retry")
    failures = counted("job_failures_total", kind="test.record", outcome="failed")
    await queue(engine, RECORD, Note(name="doomed", fail_times=99))
    worker = make_worker()

    assert await worker.run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.QUEUED, 1, None)
    assert job.last_error == "RuntimeError: planned failure 1 of 99"
    assert timedelta(seconds=9) <= job.run_at - clock.now <= timedelta(seconds=11)
    assert await worker.run_until_idle() == 0

    clock.now = job.run_at
    assert await worker.run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 2)
    assert timedelta(seconds=54) <= job.run_at - clock.now <= timedelta(seconds=66)

    clock.now = job.run_at
    with capture_logs() as logs:
        assert await worker.run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.FAILED, 3, None)
    assert job.last_error == "RuntimeError: planned failure 3 of 99"
    [entry] = [entry for entry in logs if entry["event"] == "job_failed"]
    assert (entry["log_level"], entry["outcome"], entry["attempt"]) == ("error", "failed", 3)

    clock.advance(days=1)
    assert await worker.run_until_idle() == 0
    assert await effects(engine) == []
    assert counted("job_failures_total", kind="test.record", outcome="retry") == retries + 2
    assert counted("job_failures_total", kind="test.record", outcome="failed") == failures + 1


async def test_a_job_that_fails_once_has_its_effect_once(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock
) -> None:
    completed = counted("jobs_completed_total", kind="test.record")
    await queue(engine, RECORD, Note(name="flaky", fail_times=1))
    assert await make_worker().run_until_idle() == 1
    clock.advance(seconds=12)
    assert await make_worker().run_until_idle() == 1
    assert await effects(engine) == [("flaky", 2)]
    assert await stored_jobs(engine) == []
    assert counted("jobs_completed_total", kind="test.record") == completed + 1


async def test_no_retry_past_the_kinds_max_age(engine: AsyncEngine, make_worker: Any) -> None:
    short_lived = JobKind(
        name="test.short_lived",
        payload=Note,
        handler=RECORD.handler,
        retry=RetryPolicy(delays=(timedelta(hours=1),), max_age=timedelta(minutes=30)),
    )
    await queue(engine, short_lived, Note(name="stale", fail_times=1))
    assert await make_worker(JobKinds.of(short_lived)).run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)


async def test_a_refused_job_or_a_bad_payload_fails_at_once(
    engine: AsyncEngine, make_worker: Any, session: AsyncSession
) -> None:
    await queue(engine, REFUSE, Note(name="never"))
    await queue(engine, RECORD, Note(name="to be broken"))
    await session.execute(update(Job).where(Job.kind == "test.record").values(payload={}))
    await session.commit()
    assert await make_worker().run_until_idle() == 2
    jobs = {job.kind: job for job in await stored_jobs(engine)}
    assert jobs["test.refuse"].status == JobStatus.FAILED
    assert jobs["test.refuse"].last_error == "PermanentJobError: this can never work"
    assert jobs["test.record"].status == JobStatus.FAILED
    assert (jobs["test.record"].last_error or "").startswith("PermanentJobError: invalid payload")


async def test_a_handler_past_its_timeout_is_stopped_and_retried(
    engine: AsyncEngine, make_worker: Any
) -> None:
    async def dawdle(_context: JobContext, _note: Note) -> None:
        await asyncio.sleep(10)

    slow = JobKind(
        name="test.slow", payload=Note, handler=dawdle, timeout=timedelta(milliseconds=50)
    )
    await queue(engine, slow, Note(name="slow"))
    assert await make_worker(JobKinds.of(slow)).run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts, job.last_error) == (JobStatus.QUEUED, 1, "TimeoutError: ")


async def test_a_job_whose_worker_died_is_taken_again_after_its_lease(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock, session: AsyncSession
) -> None:
    await queue(engine, RECORD, Note(name="orphan"))
    await session.execute(
        update(Job).values(
            status=JobStatus.RUNNING.value,
            attempts=1,
            locked_by="a worker that was killed",
            locked_until=clock.now + RECORD.lease_duration,
        )
    )
    await session.commit()
    assert await make_worker().run_until_idle() == 0
    clock.advance(seconds=RECORD.lease_duration.total_seconds())
    assert await make_worker().run_until_idle() == 1
    assert await effects(engine) == [("orphan", 2)]
    assert await stored_jobs(engine) == []


async def test_a_job_dies_with_its_worker_no_more_than_its_attempts_allow(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock, session: AsyncSession
) -> None:
    """A job that kills every worker that takes it is not taken forever."""
    await queue(engine, RECORD, Note(name="poison"))
    await session.execute(
        update(Job).values(
            status=JobStatus.RUNNING.value,
            attempts=RECORD.retry.max_attempts,
            locked_by="a worker that was killed",
            locked_until=clock.now,
        )
    )
    await session.commit()
    assert await make_worker().run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert job.status == JobStatus.FAILED
    assert "never finished" in (job.last_error or "")
    assert await effects(engine) == []


async def test_a_worker_whose_lease_ran_out_cannot_complete_the_job(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock
) -> None:
    """Worker A stalls past its lease; B takes the job over and completes it. When A
    resumes, its claim is gone: its write rolls back, so the effect happens once."""
    resume = asyncio.Event()
    stalled = asyncio.Event()

    async def stall_first_attempt(context: JobContext, note: Note) -> None:
        if context.attempt == 1:
            stalled.set()
            await resume.wait()
        await RECORD.handler(context, note)

    kind = JobKind(
        name="test.stall",
        payload=Note,
        handler=stall_first_attempt,
        timeout=timedelta(seconds=5),
        lease=timedelta(seconds=6),
    )
    await queue(engine, kind, Note(name="contested"))
    first = asyncio.create_task(make_worker(JobKinds.of(kind), name="A").run_until_idle())
    await asyncio.wait_for(stalled.wait(), 10)
    clock.advance(seconds=6)
    assert await make_worker(JobKinds.of(kind), name="B").run_until_idle() == 1
    assert await effects(engine) == [("contested", 2)]
    with capture_logs() as logs:
        resume.set()
        assert await asyncio.wait_for(first, 10) == 1
    assert await effects(engine) == [("contested", 2)]
    assert [entry["worker"] for entry in logs if entry["event"] == "job_claim_lost"] == ["A"]
    assert await stored_jobs(engine) == []


async def test_a_key_replaces_the_job_that_has_it_and_cancel_drops_it(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock
) -> None:
    await queue(engine, RECORD, Note(name="first"), key="k", run_at=clock.now)
    await queue(engine, RECORD, Note(name="other"), key="other", run_at=clock.now)
    await queue(
        engine, RECORD, Note(name="second"), key="k", run_at=clock.now + timedelta(minutes=5)
    )
    jobs = await stored_jobs(engine)
    assert sorted((job.unique_key, job.payload["name"]) for job in jobs) == [
        ("test.record:k", "second"),
        ("test.record:other", "other"),
    ]
    assert await make_worker().run_until_idle() == 1
    assert await effects(engine) == [("other", 1)]

    async with create_sessionmaker(engine)() as session:
        await cancel(session, RECORD, "k")
        await session.commit()
    clock.advance(minutes=5)
    assert await make_worker().run_until_idle() == 0
    assert await stored_jobs(engine) == []


async def test_a_failed_job_comes_back_when_its_key_is_queued_again(
    engine: AsyncEngine, make_worker: Any
) -> None:
    await queue(engine, REFUSE, Note(name="x"), key="k")
    await make_worker().run_until_idle()
    [failed] = await stored_jobs(engine)
    assert failed.status == JobStatus.FAILED
    await queue(engine, REFUSE, Note(name="again"), key="k")
    [fresh] = await stored_jobs(engine)
    assert (fresh.id, fresh.status, fresh.attempts, fresh.last_error) == (
        failed.id,
        JobStatus.QUEUED,
        0,
        None,
    )
    assert fresh.payload["name"] == "again"


async def test_a_periodic_kind_keeps_one_job_that_runs_again_after_each_run(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock
) -> None:
    runs: list[int] = []

    async def tick(context: JobContext, _payload: NoPayload) -> None:
        runs.append(context.attempt)
        if len(runs) == 2:
            raise RuntimeError("a bad hour")

    hourly = JobKind(
        name="test.hourly",
        payload=NoPayload,
        handler=tick,
        retry=RetryPolicy(delays=()),
        every=timedelta(hours=1),
    )
    worker = make_worker(JobKinds.of(hourly))
    await worker.schedule_periodic()
    await worker.schedule_periodic()
    [job] = await stored_jobs(engine)
    assert (job.unique_key, job.run_at) == ("test.hourly", clock.now)

    assert await worker.run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts, job.run_at) == (
        JobStatus.QUEUED,
        0,
        clock.now + timedelta(hours=1),
    )
    clock.advance(hours=1)
    assert await worker.run_until_idle() == 1
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0), "a periodic job never dies"
    assert job.run_at == clock.now + timedelta(hours=1)
    assert job.last_error == "RuntimeError: a bad hour"
    assert runs == [1, 1]


async def test_a_worker_leaves_kinds_it_does_not_know_alone(
    engine: AsyncEngine, make_worker: Any
) -> None:
    await queue(engine, REFUSE, Note(name="not mine"))
    assert await make_worker(JobKinds.of(RECORD)).run_until_idle() == 0
    [job] = await stored_jobs(engine)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)


async def test_the_run_loop_picks_up_jobs_as_they_are_queued(
    engine: AsyncEngine, make_worker: Any
) -> None:
    worker = make_worker(clock=utcnow)
    running = asyncio.create_task(worker.run())
    try:
        for index in range(6):
            await queue(engine, RECORD, Note(name=f"job {index}"))
        await wait_until(lambda: _effect_count(engine, 6), "six effects")
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 10)
    assert sorted(name for name, _ in await effects(engine)) == [f"job {i}" for i in range(6)]


async def _effect_count(engine: AsyncEngine, count: int) -> bool:
    return len(await effects(engine)) == count


async def test_stop_lets_a_short_job_finish_and_releases_one_that_does_not(
    engine: AsyncEngine, make_worker: Any
) -> None:
    started: list[str] = []
    release_quick = asyncio.Event()

    async def work(context: JobContext, note: Note) -> None:
        started.append(note.name)
        if note.name == "stuck":
            await asyncio.sleep(3600)
        await release_quick.wait()
        await RECORD.handler(context, note)

    kind = JobKind(name="test.work", payload=Note, handler=work, timeout=timedelta(hours=2))
    worker = make_worker(JobKinds.of(kind), clock=utcnow, shutdown_grace=1.0)
    running = asyncio.create_task(worker.run())
    await queue(engine, kind, Note(name="stuck"))
    await queue(engine, kind, Note(name="quick"))
    await wait_until(lambda: len(started) == 2, "both jobs to start")
    worker.request_stop()
    release_quick.set()
    await asyncio.wait_for(running, 10)

    assert await effects(engine) == [("quick", 1)]
    [job] = await stored_jobs(engine)
    assert (job.payload["name"], job.status, job.attempts, job.locked_by, job.locked_until) == (
        "stuck",
        JobStatus.QUEUED,
        0,
        None,
        None,
    )


async def test_a_worker_keeps_polling_through_database_errors(
    make_settings: SettingsFactory, tmp_path: Any
) -> None:
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/no/such/dir.db")
    broken = create_engine(settings)
    worker = Worker(engine=broken, settings=settings, kinds=TEST_KINDS, email=ConsoleEmailBackend())
    with capture_logs() as logs:
        running = asyncio.create_task(worker.run())
        await wait_until(
            lambda: sum(entry["event"] == "worker_poll_failed" for entry in logs) >= 2,
            "two failed polls",
        )
        worker.request_stop()
        await asyncio.wait_for(running, 10)
    await broken.dispose()
    assert logs[-1]["event"] == "worker_stopped"


@pytest.mark.skipif(
    POSTGRES_URL is not None, reason="the lock file is SQLite's; PostgreSQL has none"
)
async def test_on_sqlite_one_worker_runs_at_a_time(engine: AsyncEngine, make_worker: Any) -> None:
    async def note_who_runs_it(context: JobContext, note: Note) -> None:
        worker = await context.session.scalar(select(Job.locked_by).where(Job.id == context.job_id))
        await RECORD.handler(context, Note(name=f"{note.name} by {worker}"))

    kind = JobKind(name="test.who", payload=Note, handler=note_who_runs_it)
    first = make_worker(JobKinds.of(kind), clock=utcnow, name="first")
    second = make_worker(JobKinds.of(kind), clock=utcnow, name="second")
    first_running = asyncio.create_task(first.run())
    await queue(engine, kind, Note(name="one"))
    await wait_until(lambda: _effect_count(engine, 1), "the first job")
    second_running = asyncio.create_task(second.run())
    for name in ("two", "three", "four"):
        await queue(engine, kind, Note(name=name))
    await wait_until(lambda: _effect_count(engine, 4), "three more jobs")
    first.request_stop()
    await asyncio.wait_for(first_running, 10)
    await queue(engine, kind, Note(name="five"))
    await wait_until(lambda: _effect_count(engine, 5), "a job after the first stopped")
    second.request_stop()
    await asyncio.wait_for(second_running, 10)
    assert sorted(name for name, _ in await effects(engine)) == [
        "five by second",
        "four by first",
        "one by first",
        "three by first",
        "two by first",
    ]


async def test_queue_metrics_count_jobs_by_kind_and_state(
    engine: AsyncEngine, make_worker: Any, clock: FakeClock, session: AsyncSession
) -> None:
    await queue(engine, RECORD, Note(name="due"), run_at=clock.now - timedelta(seconds=42))
    await queue(engine, RECORD, Note(name="later"), run_at=clock.now + timedelta(hours=1))
    await queue(engine, REFUSE, Note(name="dead"))
    await make_worker(JobKinds.of(REFUSE)).run_until_idle()
    await session.execute(
        insert(Job).values(
            id=uuid.uuid4(),
            kind="retired.kind",
            payload={},
            status="queued",
            attempts=0,
            run_at=clock.now + timedelta(days=1),
            created_at=clock.now,
            updated_at=clock.now,
        )
    )
    await session.commit()

    await collect_queue_metrics(engine, TEST_KINDS, clock.now)

    def depth(kind: str, state: str) -> float | None:
        return REGISTRY.get_sample_value("job_queue_depth", {"kind": kind, "state": state})

    assert depth("test.record", "waiting") == 1
    assert depth("test.record", "scheduled") == 1
    assert depth("test.record", "running") == 0
    assert depth("test.refuse", "failed") == 1
    assert depth("test.refuse", "waiting") == 0
    assert depth("unknown", "scheduled") == 1
    lag = REGISTRY.get_sample_value("job_queue_lag_seconds")
    assert lag is not None
    assert 41 <= lag <= 43

    await make_worker().run_until_idle()
    await collect_queue_metrics(engine, TEST_KINDS, clock.now)
    assert depth("test.record", "waiting") == 0
    assert REGISTRY.get_sample_value("job_queue_lag_seconds") == 0
