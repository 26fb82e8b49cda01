"""Background work survives killed processes: `taskapi serve` killed with SIGKILL right after
a registration committed, workers killed mid-job, two workers sharing one PostgreSQL queue,
and `taskapi worker` stopping on SIGTERM.

Every process here is one this test started, signalled by its PID; emails go to a real SMTP
server on loopback (aiosmtpd).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskapi.core import migrations
from taskapi.core.config import Settings
from taskapi.core.db import create_sessionmaker
from taskapi.core.jobs import Job, enqueue
from taskapi.core.models import utcnow
from tests.support.backends import create_test_engine, database_env, database_settings
from tests.support.job_kinds import RECORD, Note, create_effects_table, effects, effects_by_worker
from tests.support.jobs import wait_until
from tests.support.processes import ServeFactory
from tests.support.smtp import SmtpServer, link_in

API = "/api/v1"
REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "worker-crash-test-secret-" + "x" * 32
PASSWORD = "Str0ng!Passw0rd"


@pytest.fixture
async def database(new_database_url: Any) -> Any:
    """A fresh database of the configured backend (the processes migrate it)."""
    url: str = await new_database_url()
    engine = create_test_engine(url)
    yield url, engine
    await engine.dispose()


def mail_env(smtp_server: SmtpServer, database_url: str) -> dict[str, str]:
    return {
        **database_env(database_url),
        "JWT_SECRET_KEY": SECRET,
        "EMAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_server.port),
        "SMTP_STARTTLS": "false",
        "SMTP_FROM": "taskapi <no-reply@taskapi.test>",
        "FRONTEND_URL": "http://frontend.test",
        "ENABLE_RATE_LIMITING": "false",
        "WORKER_POLL_INTERVAL_SECONDS": "0.1",
    }


async def pending_jobs(engine: AsyncEngine, prefix: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(Job).where(Job.kind.startswith(prefix))
        )
    return int(count or 0)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def verification_token(smtp_server: SmtpServer) -> str:
    return link_in(smtp_server.only_message(), "verify-email")


async def test_a_registration_committed_before_a_kill_gets_its_email_once_after_restart(
    serve: ServeFactory, smtp_server: SmtpServer, database: Any
) -> None:
    url, engine = database
    env = mail_env(smtp_server, url)
    first = serve({**env, "WORKER_ENABLED": "false"})
    response = await post(
        first.base_url,
        "/auth/register",
        {"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada"},
    )
    assert response.status_code == 201
    kill(first.process)
    assert smtp_server.messages == []
    assert await pending_jobs(engine, "auth.verification_email") == 1

    second = serve(env)
    await wait_until(lambda: bool(smtp_server.messages), "the email after the restart")
    await wait_until(
        lambda: _none_pending(engine, "auth.verification_email"), "the job to be done", within=30
    )
    token = verification_token(smtp_server)
    verified = await post(second.base_url, "/auth/verify-email", {"token": token})
    assert verified.status_code == 200
    assert len(smtp_server.messages) == 1


async def post(base_url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return await http.post(f"{API}{path}", json=body)


def start_taskapi_worker(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "taskapi", "worker"],
            cwd=cwd,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("TEST_")}, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def _none_pending(engine: AsyncEngine, prefix: str) -> bool:
    return await pending_jobs(engine, prefix) == 0


async def test_a_reminder_due_while_no_worker_ran_is_sent_once_after_restart(
    serve: ServeFactory, smtp_server: SmtpServer, database: Any
) -> None:
    url, engine = database
    env = {**mail_env(smtp_server, url), "REQUIRE_EMAIL_VERIFICATION": "false"}
    first = serve({**env, "WORKER_ENABLED": "false"})
    registered = await post(
        first.base_url,
        "/auth/register",
        {"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada"},
    )
    assert registered.status_code == 201
    remind_at = utcnow() + timedelta(seconds=2)
    async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as http:
        created = await http.post(
            f"{API}/tasks",
            json={"title": "Stretch", "remind_at": remind_at.isoformat()},
            headers={"Authorization": f"Bearer {registered.json()['access_token']}"},
        )
    assert created.status_code == 201, created.text
    kill(first.process)
    await wait_until(lambda: utcnow() > remind_at + timedelta(seconds=1), "the reminder time")
    assert smtp_server.messages == []

    serve(env)
    await wait_until(lambda: len(smtp_server.messages) == 2, "the reminder and the welcome")
    await wait_until(lambda: _none_pending(engine, "tasks.reminder"), "the reminder job done")
    await wait_until(
        lambda: _none_pending(engine, "auth.verification_email"), "the verification job done"
    )
    subjects = sorted(message["Subject"] for _, message in smtp_server.messages)
    assert subjects == ["Confirm your email address", "Reminder: Stretch"]


@pytest.fixture
def worker_processes(tmp_path: Path) -> Iterator[Any]:
    """Starts test workers (`python -m tests.support.job_kinds`); stops each (by PID) at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(database_url: str, name: str, **env: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.job_kinds"],
            cwd=REPO_ROOT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("TEST_")},
                "APP_ENV": "test",
                **database_env(database_url),
                "TEST_WORKER_NAME": name,
                "WORKER_POLL_INTERVAL_SECONDS": "0.05",
                "LOG_LEVEL": "WARNING",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


async def queue_notes(engine: AsyncEngine, notes: list[Note]) -> None:
    async with create_sessionmaker(engine)() as session:
        for note in notes:
            await enqueue(session, RECORD, note)
        await session.commit()


async def _migrated(url: str) -> None:
    await migrations.upgrade_async(
        Settings(_env_file=None, app_env="test", **database_settings(url))
    )


async def test_a_job_whose_worker_is_killed_mid_job_completes_after_its_lease(
    worker_processes: Any, database: Any, tmp_path: Path
) -> None:
    url, engine = database
    await _migrated(url)
    await create_effects_table(engine)
    marker = tmp_path / "attempt-1-started"
    await queue_notes(engine, [Note(name="interrupted", hang_file=str(marker))])
    doomed = worker_processes(url, "doomed")
    await wait_until(marker.exists, "the first attempt to start")
    killed_at = time.monotonic()
    kill(doomed)

    worker_processes(url, "successor")
    await wait_until(lambda: _effect_count(engine, 1), "the job to complete", within=60)
    assert time.monotonic() - killed_at >= RECORD.lease_duration.total_seconds() - 1
    assert await effects_by_worker(engine) == [("interrupted", 2, "successor")]
    await wait_until(lambda: _none_pending(engine, "test."), "the job to be gone")


async def _effect_count(engine: AsyncEngine, count: int) -> bool:
    return len(await effects(engine)) >= count


JOBS = 500


@pytest.mark.needs_services("postgresql", reason="workers on several hosts share PostgreSQL")
async def test_two_workers_share_500_jobs_and_each_effect_happens_once(
    worker_processes: Any, database: Any
) -> None:
    url, engine = database
    await _migrated(url)
    await create_effects_table(engine)
    await queue_notes(engine, [Note(name=f"job {index}") for index in range(JOBS)])
    for name in ("left", "right"):
        worker_processes(url, name, WORKER_CONCURRENCY="8")
    await wait_until(lambda: _effect_count(engine, JOBS), f"{JOBS} effects", within=120)
    await wait_until(lambda: _none_pending(engine, "test."), "every job to be gone")
    rows = await effects_by_worker(engine)
    names = sorted(name for name, _, _ in rows)
    assert names == sorted(f"job {index}" for index in range(JOBS)), "each effect exactly once"
    # No attempt count is asserted: on a loaded machine a claim can outlive its 6 s lease, and
    # the other worker then takes the job over (the first one's write rolls back). That is
    # the lease doing its job; the effect still happens once, which is what is checked.
    by_worker = {worker: sum(1 for *_, w in rows if w == worker) for worker in ("left", "right")}
    assert sum(by_worker.values()) == JOBS
    assert min(by_worker.values()) > 0, by_worker


async def test_taskapi_worker_sends_queued_email_and_stops_cleanly_on_sigterm(
    serve: ServeFactory, smtp_server: SmtpServer, database: Any, tmp_path: Path
) -> None:
    url, engine = database
    env = mail_env(smtp_server, url)
    server = serve({**env, "WORKER_ENABLED": "false"})
    response = await post(server.base_url, "/auth/forgot-password", {"email": "nobody@x.org"})
    assert response.status_code == 202
    registered = await post(
        server.base_url,
        "/auth/register",
        {"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada"},
    )
    assert registered.status_code == 201
    log = tmp_path / "taskapi-worker.log"
    worker = start_taskapi_worker(env, tmp_path, log)
    try:
        await wait_until(lambda: bool(smtp_server.messages), "the email from taskapi worker")
        await wait_until(
            lambda: _none_pending(engine, "auth.verification_email"), "the job to be done"
        )
        verification_token(smtp_server)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            kill(worker)
    output = log.read_text(errors="replace")
    assert "worker_started" in output
    assert "worker_stopped" in output
