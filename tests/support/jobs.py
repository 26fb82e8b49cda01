"""Running the job queue in tests, and waiting on a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from taskapi.worker import create_worker
from tests.support.apps import state_of


async def run_jobs(app: FastAPI) -> int:
    """Run every queued job that is due, as the app's worker would; how many ran."""
    state = state_of(app)
    return await create_worker(state["settings"], state["engine"]).run_until_idle()


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
