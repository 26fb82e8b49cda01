"""Python function calls and CPU time per request, in one process: the app called through
ASGI (no server, no client), PostgreSQL and Redis real.

    uv run python -m bench.calls                      # every kind of request
    uv run python -m bench.calls get me --requests 3000
    uv run python -m bench.calls get --profile get.prof   # cProfile's stats, to read

On shared cores a request's CPU time moves by 15 to 25 % between runs of the same code; the
number of Python calls it makes does not, so a change to the per-request path shows in it
exactly (docs/performance.md, fourth round). Creates its own database (dropped afterwards),
seeds it as `bench/run` does and starts the app in the benchmark's production configuration
(metrics in multiprocess mode, rate limits in Redis, JSON logs, here to /dev/null) with the
embedded worker off, whose polls would count too. One user signs in; each kind of request
runs a warm-up, then is counted under cProfile, then timed in ten chunks without it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import redirect_stdout
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import uvloop

from bench import harness

WARM_UP = 300
CHUNKS = 10
KINDS = ["get", "list", "post", "patch", "me", "live"]

Call = Callable[[int], Awaitable[tuple[int, bytes]]]


async def asgi_request(
    app: Any,
    state: dict[str, Any],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> tuple[int, bytes]:
    """Status and body of one request, as uvicorn would hand it to the app."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": state.copy(),
    }
    answer: dict[str, Any] = {"status": 0, "body": b""}
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.Event().wait()  # no disconnect while the app works
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]


def requests_of(
    app: Any, state: dict[str, Any], token: str, task_ids: list[str]
) -> dict[str, Call]:
    auth = {"authorization": f"Bearer {token}"}
    json_auth = {**auth, "content-type": "application/json"}
    versions: dict[str, int] = {}

    async def get(index: int) -> tuple[int, bytes]:
        return await asgi_request(app, state, "GET", f"/api/v1/tasks/{task_ids[index % 50]}", auth)

    async def patch(index: int) -> tuple[int, bytes]:
        task_id = task_ids[index % 50]
        headers = {**json_auth, "if-match": f'"{versions.get(task_id, 1)}"'}
        status, body = await asgi_request(
            app, state, "PATCH", f"/api/v1/tasks/{task_id}", headers, b'{"priority":"low"}'
        )
        if status == 200:
            versions[task_id] = json.loads(body)["version"]
        return status, body

    async def post(_index: int) -> tuple[int, bytes]:
        body = b'{"title":"counted","priority":"high"}'
        return await asgi_request(app, state, "POST", "/api/v1/tasks", json_auth, body)

    async def listing(_index: int) -> tuple[int, bytes]:
        return await asgi_request(app, state, "GET", "/api/v1/tasks?limit=20", auth)

    async def me(_index: int) -> tuple[int, bytes]:
        return await asgi_request(app, state, "GET", "/api/v1/users/me", auth)

    async def live(_index: int) -> tuple[int, bytes]:
        return await asgi_request(app, state, "GET", "/health/live", {})

    return {"get": get, "list": listing, "post": post, "patch": patch, "me": me, "live": live}


async def measure(call: Call, count: int, profile: Path | None) -> tuple[float, float, float]:
    """(calls per request, fastest chunk's CPU µs per request, median chunk's)."""

    async def run(start: int, requests: int) -> None:
        for index in range(start, start + requests):
            status, body = await call(index)
            if status not in (200, 201):
                raise SystemExit(f"answer {status}: {body[:300]!r}")

    await run(0, WARM_UP)
    profiler = cProfile.Profile()
    profiler.enable()
    await run(WARM_UP, count)
    profiler.disable()
    stats = pstats.Stats(profiler)
    if profile is not None:
        stats.dump_stats(profile)
    chunk = max(count // CHUNKS, 1)
    chunk_us: list[float] = []
    for index in range(CHUNKS):
        started = time.process_time()
        await run(WARM_UP + count + index * chunk, chunk)
        chunk_us.append((time.process_time() - started) / chunk * 1e6)
    chunk_us.sort()
    calls: int = stats.total_calls  # type: ignore[attr-defined]  # pstats keeps it untyped
    return calls / count, chunk_us[0], chunk_us[CHUNKS // 2]


async def count_calls(
    database_url: str, kinds: list[str], count: int, profile: Path | None
) -> dict[str, tuple[float, float, float]]:
    """What `measure` gives for each kind of request."""
    from taskapi.app import create_app
    from taskapi.core import migrations
    from taskapi.core.config import Settings

    settings = Settings(
        database_url=database_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        jwt_secret_key=secrets.token_urlsafe(48),
        app_env="production",
        email_backend="console",
        redis_url=harness.REDIS_URL,
        redis_key_prefix=f"taskapi-calls-{uuid.uuid4().hex[:8]}:",
        log_level="INFO",
        enable_rate_limiting=True,
        enable_metrics=True,
        rate_limit_user_per_minute=100_000_000,
        rate_limit_anonymous_per_minute=100_000_000,
        rate_limit_login_per_account_per_minute=100_000_000,
        worker_enabled=False,
    )
    await asyncio.to_thread(migrations.upgrade, settings)
    seeded = await harness.seed(database_url, harness.SMOKE)
    user = seeded.thread_users[0]
    app = create_app(settings, served=True)
    async with app.router.lifespan_context(app) as lifespan_state:
        state = dict(lifespan_state or {})
        credentials = json.dumps({"email": user["email"], "password": harness.PASSWORD})
        status, body = await asgi_request(
            app,
            state,
            "POST",
            "/api/v1/auth/login",
            {"content-type": "application/json"},
            credentials.encode(),
        )
        if status != 200:
            raise SystemExit(f"sign-in answered {status}: {body[:300]!r}")
        calls = requests_of(app, state, json.loads(body)["access_token"], user["task_ids"])
        return {kind: await measure(calls[kind], count, profile) for kind in kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kinds", nargs="*", metavar="kind", help=f"of {', '.join(KINDS)}")
    parser.add_argument("--requests", type=int, default=2000, help="counted per kind")
    parser.add_argument("--profile", type=Path, help="cProfile stats of the (last) kind")
    args = parser.parse_args()
    kinds = args.kinds or KINDS
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client must see its multiprocess directory on import")
    with TemporaryDirectory(prefix="taskapi-calls-metrics-") as metrics_dir:
        # Read when prometheus_client is first imported, as `taskapi serve` sets it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        with (
            harness.bench_database() as database_url,
            open(os.devnull, "w") as devnull,
            redirect_stdout(devnull),
        ):
            results = uvloop.run(count_calls(database_url, kinds, args.requests, args.profile))
    print(f"{'request':8} {'calls/request':>14} {'CPU µs fastest':>15} {'CPU µs median':>14}")
    for kind, (per_request, fastest, median) in results.items():
        print(f"{kind:8} {per_request:14,.0f} {fastest:15,.0f} {median:14,.0f}")


if __name__ == "__main__":
    main()
