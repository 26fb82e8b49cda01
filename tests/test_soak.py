"""The short soak (bench/soak.py, about 10 s) in CI: zero 5xx, no lost writes, worker
memory within 10 % after the warm-up. It runs its own server with two workers on its own
PostgreSQL database and Redis prefix, so it needs both by design."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.backends import POSTGRES_URL, REDIS_URL

pytestmark = pytest.mark.needs_services(
    "postgresql", "redis", reason="the soak runs on PostgreSQL and Redis by design"
)

SOAK_SECONDS = 10


async def test_short_soak_passes(repo_root: Path) -> None:
    assert POSTGRES_URL is not None
    assert REDIS_URL is not None
    run = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--seconds",
            str(SOAK_SECONDS),
            "--postgres-url",
            POSTGRES_URL,
            "--redis-url",
            REDIS_URL,
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "soak: passed" in report
    # Proof that the soak exercised reads, creates and deletes, not a throughput floor:
    # how many requests 10 s hold depends on the machine's load (bench/ measures speed).
    statuses = re.search(r"statuses\s+(.+)\n", report)
    assert statuses is not None, report
    counts = dict(item.split(": ") for item in statuses.group(1).split(", "))
    assert {"200", "201", "204"} <= counts.keys(), report
    kept = re.search(r"writes read\s+(\d+) tasks kept", report)
    assert kept is not None, report
    assert int(kept.group(1)) > 0, report
    assert re.search(r"5xx\s+0\n", report), report
    assert re.search(r"lost 0\n", report), report
