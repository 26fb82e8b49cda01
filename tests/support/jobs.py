"""Running the job queue in tests, a clock tests move, and waiting on a condition instead of
sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import FastAPI

from taskapi.core.models import utcnow
from taskapi.worker import create_worker
from tests.support.apps import state_of


async def run_jobs(app: FastAPI, *, clock: Callable[[], datetime] = utcnow) -> int:
    """Run every queued job that is due by `clock`, as the app's worker would; how many ran."""
    state = state_of(app)
    return await create_worker(state["settings"], state["engine"], clock=clock).run_until_idle()


async def run_periodic_jobs(app: FastAPI, *, clock: Callable[[], datetime]) -> int:
    """Schedule the app's periodic jobs (as a starting worker does), then run what is due."""
    state = state_of(app)
    worker = create_worker(state["settings"], state["engine"], clock=clock)
    await worker.schedule_periodic()
    return await worker.run_until_idle()


def _a_second_from_now() -> datetime:
    return utcnow() + timedelta(seconds=1)


@dataclass
class FakeClock:
    """Starts a second ahead of real time, so that jobs queued during the test are due."""

    now: datetime = field(default_factory=_a_second_from_now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, *, within: float = 30.0
) -> None:
    """Poll `condition` (plain or async) until it holds; fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(0.02)
