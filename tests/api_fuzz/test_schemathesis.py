"""Schemathesis against the app's own OpenAPI document, in CI on the PostgreSQL pass.

A real `taskapi serve` (production settings, its own PostgreSQL database, Redis when the
run has one) is fuzzed by the Schemathesis CLI with every check it has and all four phases
(examples, coverage, fuzzing, stateful). Any finding fails this test with Schemathesis'
report, which includes a curl line to reproduce it. The run is bounded by
FUZZ_MAX_EXAMPLES per operation and phase and seeded, so a finding reproduces.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import func, select, update

from taskapi.auth.models import Scope, User
from taskapi.tasks.models import Task
from tests.support.backends import (
    DatabaseFactory,
    create_test_engine,
    database_env,
)
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.processes import ServeFactory

pytestmark = pytest.mark.needs_services(
    "postgresql",
    reason="fuzzes a real server on PostgreSQL by design; runs on the PostgreSQL pass",
)

FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "100"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261121"))
RUN_TIMEOUT_SECONDS = 600
HERE = Path(__file__).parent


async def verified_account(base_url: str, database_url: str) -> tuple[str, str]:
    """(email, access token) of an account registered through the API and verified in the
    database, as the emailed link would have done."""
    email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": DEFAULT_PASSWORD, "full_name": "Fuzz Account"},
        )
    assert response.status_code == 201, response.text
    engine = create_test_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(update(User).where(User.email == email).values(is_active=True))
    finally:
        await engine.dispose()
    token: str = response.json()["access_token"]
    return email, token


async def test_schemathesis_finds_nothing(
    serve: ServeFactory,
    new_database_url: DatabaseFactory,
    redis_url: str | None,
    repo_root: Path,
    tmp_path: Path,
) -> None:
    database_url = await new_database_url()
    server = serve(
        {
            "APP_ENV": "production",
            **database_env(database_url),
            "REDIS_URL": redis_url or "",
            "REDIS_KEY_PREFIX": f"taskapi-fuzz-{uuid.uuid4().hex[:12]}:",
            "WORKERS": "1",
            # A line per request (JSON, stdout.log), to show the oversized headers' 431s.
            "LOG_LEVEL": "INFO",
            # Limits stay on (their headers and code run) but high enough never to refuse.
            "RATE_LIMIT_USER_PER_MINUTE": "1000000",
            "RATE_LIMIT_ANONYMOUS_PER_MINUTE": "1000000",
            "RATE_LIMIT_LOGIN_PER_ACCOUNT_PER_MINUTE": "1000000",
        }
    )
    _, token = await verified_account(server.base_url, database_url)
    email, pat_owner_token = await verified_account(server.base_url, database_url)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        created = await client.post(
            "/api/v1/auth/tokens",
            json={"name": "fuzz", "scopes": [str(scope) for scope in Scope]},
            headers={"Authorization": f"Bearer {pat_owner_token}"},
        )
    assert created.status_code == 201, created.text
    junit = tmp_path / "junit.xml"

    run = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{server.base_url}/openapi.json",
            # Every check, spelled out so a change of Schemathesis' defaults cannot drop one.
            "--checks",
            "all",
            "--max-examples",
            str(FUZZ_MAX_EXAMPLES),
            "--seed",
            str(FUZZ_SEED),
            # One worker: Hypothesis' lambda descriptions are not thread-safe (they crashed
            # a run with two), and the machine has two cores for server and fuzzer.
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            str(junit),
        ],
        cwd=repo_root,
        env={
            **os.environ,
            "TASKAPI_FUZZ_BASE_URL": server.base_url,
            "TASKAPI_FUZZ_TOKEN": token,
            "TASKAPI_FUZZ_PAT": created.json()["token"],
        },
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20000:]

    # Not a vacuous pass: every operation ran, in every phase, and the personal access token
    # really worked (the fuzzer created tasks with it).
    suite = ElementTree.parse(junit).getroot()  # noqa: S314 (our own report file)
    operations = {case.get("name") for case in suite.iter("testcase")}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        schema = (await client.get("/openapi.json")).json()
    documented = {
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if path.startswith("/api/")
    }
    assert documented <= operations, documented - operations
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"{phase} (in" in report, report[-5000:]
    engine = create_test_engine(database_url)
    try:
        async with engine.connect() as connection:
            user_id = await connection.scalar(select(User.id).where(User.email == email))
            created = await connection.scalar(
                select(func.count()).select_from(Task).where(Task.user_id == user_id)
            )
    finally:
        await engine.dispose()
    assert created
    # The oversized headers of schemathesis_hooks.py were sent, and answered 431.
    access_log = (server.workdir / "stdout.log").read_text(errors="replace")
    assert '"status":431' in access_log, access_log[-2000:]
