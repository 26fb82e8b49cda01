"""A worker killed with SIGKILL under load: the other keeps serving, uvicorn's supervisor
starts a replacement, and the replacement serves.

`taskapi serve` runs with WORKERS=2 on 127.0.0.1; only its own worker processes (children
of the server this test started) are ever signalled. The database is a PostgreSQL cluster
of the test's own. Runs on both passes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.factories import DEFAULT_PASSWORD
from tests.support.processes import OwnPostgres, ServeFactory, Server

pytestmark = pytest.mark.needs_services(
    "initdb", "pg_ctl", reason="serves from a PostgreSQL cluster of its own"
)

CLIENTS = 6
WAIT_SECONDS = 60.0
LOG_MARGIN = 0.2


def worker_pids(server: Server) -> set[int]:
    """uvicorn's workers: the server's children started by multiprocessing's spawn."""
    workers = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.process.pid and b"spawn_main" in cmdline:
            workers.add(int(entry.name))
    return workers


def workers_started(server: Server) -> int:
    """Workers that finished start-up (uvicorn logs it once per worker process)."""
    log = (server.workdir / "stderr.log").read_text(errors="replace")
    return log.count("Application startup complete.")


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Load:
    """Clients calling an authenticated endpoint back to back, each outcome timestamped."""

    base_url: str
    token: str
    successes: list[float] = field(default_factory=list)
    server_errors: list[int] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                try:
                    response = await http.get("/api/v1/users/me", headers=headers)
                except httpx.TransportError as error:
                    self.transport_errors.append(type(error).__name__)
                    continue
                if response.status_code == 200:
                    self.successes.append(time.monotonic())
                else:
                    self.server_errors.append(response.status_code)

    def served_between(self, start: float, end: float) -> int:
        return sum(start < moment < end for moment in self.successes)


async def test_sigkilled_worker_is_replaced_and_the_service_keeps_answering(
    serve: ServeFactory, own_postgres: OwnPostgres
) -> None:
    server = await asyncio.to_thread(
        serve,
        {
            "APP_ENV": "production",
            "DATABASE_URL": await own_postgres.create_database(),
            "WORKERS": "2",
            "ENABLE_RATE_LIMITING": "false",
            "ENABLE_METRICS": "false",
            "LOG_LEVEL": "INFO",
        },
    )
    await wait_for(lambda: len(worker_pids(server)) == 2, "two workers")
    await wait_for(lambda: workers_started(server) == 2, "two workers serving")
    first, second = sorted(worker_pids(server))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        registered = await http.post(
            "/api/v1/auth/register",
            json={
                "email": f"kill-{uuid.uuid4().hex[:8]}@example.com",
                "password": DEFAULT_PASSWORD,
                "full_name": "Under Load",
            },
        )
    assert registered.status_code == 201, registered.text
    load = Load(base_url=server.base_url, token=registered.json()["access_token"])
    clients = [asyncio.create_task(load.client()) for _ in range(CLIENTS)]
    try:
        await wait_for(lambda: len(load.successes) >= 50, "traffic before the kill")

        os.kill(first, signal.SIGKILL)
        killed_first = time.monotonic()
        await wait_for(lambda: len(worker_pids(server) - {first, second}) == 1, "a replacement")
        (replacement,) = worker_pids(server) - {first, second}
        await wait_for(lambda: workers_started(server) == 3, "the replacement serving")
        first_replacement_ready = time.monotonic()

        # Kill the last original worker: until its own replacement has started, only the
        # first replacement can answer.
        os.kill(second, signal.SIGKILL)
        killed_second = time.monotonic()
        await wait_for(lambda: workers_started(server) == 4, "the second replacement serving")
        second_replacement_ready = time.monotonic()
        before_end = len(load.successes)
        await wait_for(lambda: len(load.successes) >= before_end + 50, "traffic after the kills")
    finally:
        load.stop.set()
        await asyncio.gather(*clients)

    # Between a kill and the moment its replacement logs that it has started (seen at most
    # one poll late, hence the margin) exactly one worker was alive: the survivor after the
    # first kill, the first replacement after the second.
    survivor_served = load.served_between(killed_first, first_replacement_ready - LOG_MARGIN)
    replacement_served = load.served_between(killed_second, second_replacement_ready - LOG_MARGIN)
    assert server.process.poll() is None, "the supervisor itself must keep running"
    assert replacement in worker_pids(server)
    assert load.server_errors == []
    # Only requests in flight on a killed worker's connections may fail: at most one per
    # client and kill.
    assert len(load.transport_errors) <= 2 * CLIENTS, load.transport_errors
    assert survivor_served > 0, f"{first_replacement_ready - killed_first:.2f} s"
    assert replacement_served > 0, f"{second_replacement_ready - killed_second:.2f} s"
    log = (server.workdir / "stderr.log").read_text(errors="replace")
    assert f"Child process [{first}] died" in log
    assert f"Child process [{second}] died" in log
