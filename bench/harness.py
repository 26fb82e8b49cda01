"""Benchmark the API against the floor (bench/floor.py) on one machine, in one run.

Creates its own PostgreSQL database, starts both servers with two workers each, seeds users
and tasks, then for every scenario runs wrk (warm-up, then a measured run) against the app and
the floor in turn, and prints one table. Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from taskapi.core.models import new_id
from taskapi.core.security import argon2id
from taskapi.webhooks.delivery import new_secret
from taskapi.webhooks.schemas import EventType

ROOT = Path(__file__).resolve().parents[1]
WRK_SCRIPT = ROOT / "bench" / "wrk" / "scenario.lua"
SERVE = [str(Path(sys.executable).with_name("taskapi")), "serve"]
"""The app started as the Dockerfile starts it: by the `taskapi` script, which each uvicorn
worker runs again (multiprocessing's spawn), unlike `python -m taskapi`."""
PASSWORD = "Bench!Passw0rd"  # noqa: S105 (the seeded benchmark users' password)
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKERS = 2
TASKS_PER_USER = 1_000
DEEP_OFFSET = 80_000

# Scenario name, wrk mode, what it measures.
SCENARIOS = [
    ("a", "get_task", "GET /tasks/{id}"),
    ("b", "list_tasks", "GET /tasks (20 of 1,000, with total)"),
    ("c", "create_task", "POST /tasks"),
    ("d", "patch_task", "PATCH /tasks/{id} (current version)"),
    ("e", "me", "GET /users/me"),
    ("f", "login", "POST /auth/login"),
    ("g", "live", "GET /health/live"),
    ("h1", "big_first", "GET /tasks, 100k tasks: first page"),
    ("h2", "big_offset", "GET /tasks, 100k tasks: deep page by offset"),
    ("h3", "big_cursor", "GET /tasks, 100k tasks: deep page by cursor"),
    # The second wave's costs, each against the floor's plain request of the same kind.
    ("i", "get_task_pat", "GET /tasks/{id} with a personal access token"),
    ("j", "create_task_keyed", "POST /tasks with an Idempotency-Key"),
    ("k", "create_task_hooked", "POST /tasks, a webhook on every event"),
    ("l", "patch_task_hooked", "PATCH /tasks/{id}, a webhook on every event"),
]
HOOKED_MODES = {"create_task_hooked", "patch_task_hooked"}
FLOOR_WEBHOOK_RECEIVER = "/webhook-receiver"
"""The floor's route that accepts the app's webhook deliveries (bench/floor.py)."""
"""Run after every other scenario: they subscribe the users to a webhook, which stays."""


@dataclass
class Profile:
    warmup: int
    duration: int
    connections: int
    threads: int
    big_tasks: int
    deep_offset: int


FULL = Profile(
    warmup=3, duration=10, connections=50, threads=2, big_tasks=100_000, deep_offset=DEEP_OFFSET
)
QUICK = Profile(
    warmup=2, duration=5, connections=50, threads=2, big_tasks=20_000, deep_offset=16_000
)
SMOKE = Profile(warmup=0, duration=1, connections=8, threads=2, big_tasks=3_000, deep_offset=2_000)


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Seed:
    thread_users: list[dict[str, Any]] = field(default_factory=list)
    big_user: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def create_database(server_url: str, prefix: str) -> tuple[str, str]:
    """A new empty database on `server_url`: its name and its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    return name, server_url.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(server_url: str, name: str) -> None:
    await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def bench_database() -> Iterator[str]:
    name, url = asyncio.run(create_database(SERVER_URL, "taskapi_bench"))
    try:
        yield url
    finally:
        asyncio.run(drop_database(SERVER_URL, name))


def start_server(
    name: str, command: list[str], env: dict[str, str], workdir: Path, port: int
) -> Server:
    log_path = workdir / f"{name}.log"
    process = subprocess.Popen(  # noqa: S603
        command,
        env={**os.environ, **env, "PORT": str(port)},
        cwd=ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(name=name, port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early; see {log_path}")
        try:
            if httpx.get(f"{server.url}/health/live", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{name} did not answer within 60 s; see {log_path}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


async def seed(database_url: str, profile: Profile) -> Seed:
    """Rows go in by COPY: what is measured is serving, not seeding."""
    password_hash = argon2id().hash(PASSWORD)
    connection = await asyncpg.connect(asyncpg_url(database_url))
    result = Seed()
    now = datetime.now(UTC)
    try:
        users = [
            {"id": new_id(), "email": f"bench-{index}@example.com"}
            for index in range(profile.threads)
        ]
        big = {"id": new_id(), "email": "bench-big@example.com"}
        await connection.copy_records_to_table(
            "users",
            records=[
                (user["id"], user["email"], password_hash, "Bench User", True, now, now)
                for user in [*users, big]
            ],
            columns=[
                "id",
                "email",
                "password_hash",
                "full_name",
                "is_active",
                "created_at",
                "updated_at",
            ],
        )
        for user, count in [*((user, TASKS_PER_USER) for user in users), (big, profile.big_tasks)]:
            records = []
            for index in range(count):
                created = now - timedelta(seconds=count - index)
                records.append(
                    (
                        new_id(),
                        user["id"],
                        f"Seeded task {index}",
                        "Seeded for the benchmark",
                        "pending",
                        ("low", "medium", "high")[index % 3],
                        None,
                        1,
                        created,
                        created,
                    )
                )
            await connection.copy_records_to_table(
                "tasks",
                records=records,
                columns=[
                    "id",
                    "user_id",
                    "title",
                    "description",
                    "status",
                    "priority",
                    "due_date",
                    "version",
                    "created_at",
                    "updated_at",
                ],
            )
            user["task_ids"] = [str(record[0]) for record in records]
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    result.thread_users = users
    result.big_user = big
    return result


def login(url: str, email: str) -> str:
    response = httpx.post(
        f"{url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def personal_token(url: str, access_token: str) -> str:
    response = httpx.post(
        f"{url}/api/v1/auth/tokens",
        json={"name": "bench", "scopes": ["tasks:read", "tasks:write"]},
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


async def subscribe_to_everything(database_url: str, users: list[dict[str, Any]], url: str) -> None:
    """A webhook on every event for each user, written as the API would (POST /webhooks
    refuses a loopback http:// target in production, and the receiver is the floor's)."""
    now = datetime.now(UTC)
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        await connection.copy_records_to_table(
            "webhooks",
            records=[
                (
                    new_id(),
                    user["id"],
                    url,
                    json.dumps([str(event) for event in EventType]),
                    "bench",
                    True,
                    new_secret(),
                    now,
                    now,
                )
                for user in users
            ],
            columns=[
                "id",
                "user_id",
                "url",
                "events",
                "description",
                "enabled",
                "secret",
                "created_at",
                "updated_at",
            ],
        )
    finally:
        await connection.close()


async def delivery_outcomes(database_url: str) -> dict[str, int]:
    """How the webhook scenarios' deliveries stand when the runs end."""
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS queued, count(delivered_at) AS delivered, "
            "count(*) FILTER (WHERE last_error IS NOT NULL AND delivered_at IS NULL) AS failing "
            "FROM webhook_deliveries"
        )
    finally:
        await connection.close()
    return dict(row) if row is not None else {}


def deep_cursor(url: str, token: str, offset: int) -> str:
    """Walk the server's own cursor pages to `offset`: the cursor format stays its business."""
    headers = {"Authorization": f"Bearer {token}"}
    step = 100
    response = httpx.get(f"{url}/api/v1/tasks", params={"limit": step}, headers=headers, timeout=30)
    response.raise_for_status()
    cursor = response.json()["next_cursor"]
    for _ in range(offset // step - 1):
        response = httpx.get(
            f"{url}/api/v1/tasks",
            params={"limit": step, "cursor": cursor},
            headers=headers,
            timeout=30,
        )
        response.raise_for_status()
        cursor = response.json()["next_cursor"]
    return str(cursor)


async def current_versions(database_url: str, task_ids: list[str]) -> list[int]:
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        rows = await connection.fetch(
            "SELECT id::text, version FROM tasks WHERE id = ANY($1::uuid[])", task_ids
        )
    finally:
        await connection.close()
    by_id = {row["id"]: row["version"] for row in rows}
    return [by_id[task_id] for task_id in task_ids]


def lua_value(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"[{json.dumps(k)}] = {lua_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    if value is None:
        return "nil"
    return json.dumps(value)


def write_data(path: Path, data: dict[str, Any]) -> None:
    path.write_text("return " + lua_value(data) + "\n", encoding="utf-8")


def run_wrk(
    url: str,
    mode: str,
    data_path: Path,
    seconds: int,
    profile: Profile,
    connections: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{threads or profile.threads}",
        f"-c{connections or profile.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        mode,
    ]
    output = subprocess.run(  # noqa: S603
        command,
        env={**os.environ, "BENCH_DATA": str(data_path)},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH_RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _argon2_worker(seconds: float, queue: Queue[int]) -> None:
    hasher = argon2id()
    password_hash = hasher.hash(PASSWORD)
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hasher.verify(PASSWORD, password_hash)
        count += 1
    queue.put(count)


def raw_argon2_rate(seconds: float) -> float:
    """Verifications per second with every core busy: the ceiling for logins."""
    queue: Queue[int] = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=_argon2_worker, args=(seconds, queue))
        for _ in range(os.cpu_count() or 1)
    ]
    for process in processes:
        process.start()
    total = sum(queue.get() for _ in processes)
    for process in processes:
        process.join()
    return total / seconds


def worker_pids(root_pid: int) -> list[int]:
    """uvicorn's worker processes (spawned children), not its supervisor."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(root_pid) and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


def worker_rss_mb(root_pid: int) -> list[float]:
    rss = []
    for pid in worker_pids(root_pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss.append(int(line.split()[1]) / 1024)
    return sorted(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="seconds-long run that checks the harness"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs at full concurrency, for tuning"
    )
    parser.add_argument("--only", nargs="*", help="scenario letters to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the app on top of the benchmark's (e.g. WORKER_ENABLED=false)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy of every app worker during each measured run (folded stacks)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="4 instances x 2 workers on 30 database connections, with and without PgBouncer",
    )
    args = parser.parse_args()
    profile = SMOKE if args.smoke else QUICK if args.quick else FULL
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (bench/run installs it)")

    workdir = ROOT / "bench" / "results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir.mkdir(parents=True, exist_ok=True)
    if args.scale:
        from bench import scale

        scaled = scale.run(profile, workdir)
        scale.print_table(scaled, machine(), profile)
        if args.json:
            args.json.write_text(json.dumps(scaled, indent=2), encoding="utf-8")
        return
    secret = secrets.token_urlsafe(48)
    scenarios = [s for s in SCENARIOS if not args.only or s[0] in args.only]
    scenarios.sort(key=lambda scenario: scenario[1] in HOOKED_MODES)
    with bench_database() as database_url:
        sqlalchemy_url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        common = {"DATABASE_URL": sqlalchemy_url, "JWT_SECRET_KEY": secret, "HOST": "127.0.0.1"}
        app_port, floor_port = free_port(), free_port()
        app = start_server(
            "app",
            SERVE,
            {
                **common,
                "APP_ENV": "production",
                "EMAIL_BACKEND": "console",
                "REDIS_URL": REDIS_URL,
                "REDIS_KEY_PREFIX": f"taskapi-bench-{uuid.uuid4().hex[:8]}:",
                "WORKERS": str(WORKERS),
                "LOG_LEVEL": "INFO",
                "ENABLE_RATE_LIMITING": "true",
                "ENABLE_METRICS": "true",
                "RATE_LIMIT_USER_PER_MINUTE": "100000000",
                "RATE_LIMIT_ANONYMOUS_PER_MINUTE": "100000000",
                "RATE_LIMIT_LOGIN_PER_ACCOUNT_PER_MINUTE": "100000000",
                # The webhook scenarios deliver to the floor's receiver on 127.0.0.1.
                "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                **dict(setting.split("=", 1) for setting in args.app_env),
            },
            workdir,
            app_port,
        )
        try:
            floor = start_server(
                "floor",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.floor:app",
                    "--host",
                    "127.0.0.1",
                    "--workers",
                    str(WORKERS),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "--port",
                    str(floor_port),
                ],
                common,
                workdir,
                floor_port,
            )
        except Exception:
            stop_server(app)
            raise
        try:
            results = run_all(
                app, floor, database_url, profile, scenarios, workdir, py_spy=args.profile
            )
            results["memory_mb"] = worker_rss_mb(app.process.pid)
            results["app_env"] = args.app_env
        finally:
            stop_server(app)
            stop_server(floor)
    print_table(results, profile)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


def run_all(
    app: Server,
    floor: Server,
    database_url: str,
    profile: Profile,
    scenarios: list[tuple[str, str, str]],
    workdir: Path,
    *,
    py_spy: bool = False,
) -> dict[str, Any]:
    seeded = asyncio.run(seed(database_url, profile))
    results: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile.__dict__,
        "scenarios": [],
    }
    contexts: dict[str, dict[str, Any]] = {
        server.name: {"password": PASSWORD} for server in (app, floor)
    }
    needs_tokens = any(mode != "live" for _, mode, _ in scenarios)
    for server in (app, floor) if needs_tokens else ():
        big_token = login(server.url, seeded.big_user["email"])
        data: dict[str, Any] = {
            "password": PASSWORD,
            "threads": [
                {
                    "token": (token := login(server.url, user["email"])),
                    # The floor knows no personal tokens: its (i) is (a) again.
                    "pat": personal_token(server.url, token)
                    if server is app and any(mode == "get_task_pat" for _, mode, _ in scenarios)
                    else token,
                    "login_email": user["email"],
                    "tasks": user["task_ids"],
                    "patch_tasks": user["task_ids"][:500],
                }
                for user in seeded.thread_users
            ],
            "big": {
                "token": big_token,
                "offset_page": profile.deep_offset // 20 + 1,
                "cursor": None,
            },
        }
        if any(mode == "big_cursor" for _, mode, _ in scenarios):
            data["big"]["cursor"] = deep_cursor(server.url, big_token, profile.deep_offset)
        contexts[server.name] = data

    subscribed = False
    for letter, mode, label in scenarios:
        if mode in HOOKED_MODES and not subscribed:
            asyncio.run(
                subscribe_to_everything(
                    database_url, seeded.thread_users, f"{floor.url}{FLOOR_WEBHOOK_RECEIVER}"
                )
            )
            subscribed = True
        row: dict[str, Any] = {"scenario": letter, "label": label}
        for server in (app, floor):
            data = contexts[server.name]
            data_path = workdir / f"{server.name}-{mode}.lua"
            for run_seconds, key in ((profile.warmup, None), (profile.duration, server.name)):
                if run_seconds == 0:
                    continue
                if mode in {"patch_task", "patch_task_hooked"}:
                    # wrk stops with requests in flight; let the server finish them before
                    # reading versions, or the next run starts from stale ones (409s).
                    time.sleep(1)
                    for thread in data["threads"]:
                        versions = asyncio.run(
                            current_versions(database_url, thread["patch_tasks"])
                        )
                        thread["patch_versions"] = versions
                write_data(data_path, data)
                if mode == "login" and key == "app":
                    row["live_during_login"] = run_concurrently(
                        server, data_path, run_seconds, profile
                    )
                    row[key] = row["live_during_login"].pop("login")
                elif key:
                    with recording(server, mode, run_seconds, workdir, enabled=py_spy):
                        row[key] = run_wrk(server.url, mode, data_path, run_seconds, profile)
                else:
                    run_wrk(server.url, mode, data_path, run_seconds, profile)
        row["ratio"] = row["app"]["rps"] / row["floor"]["rps"] if row["floor"]["rps"] else None
        results["scenarios"].append(row)
        if mode == "login":
            results["argon2_raw_per_second"] = raw_argon2_rate(max(2, profile.duration // 2))
    if subscribed:
        results["webhook_deliveries"] = asyncio.run(delivery_outcomes(database_url))
    return results


@contextmanager
def recording(
    server: Server, mode: str, seconds: int, workdir: Path, *, enabled: bool
) -> Iterator[None]:
    """py-spy on each of the app's workers for the measured run: one file of folded stacks
    per worker (`flamegraph.pl`, speedscope or `bench/profile_top.py` read them)."""
    if not enabled or server.name != "app":
        yield
        return
    recorders = [
        subprocess.Popen(  # noqa: S603
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "250",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(workdir / f"profile-{mode}-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in worker_pids(server.process.pid)
    ]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.wait(timeout=seconds + 30)


def run_concurrently(
    server: Server, data_path: Path, seconds: int, profile: Profile
) -> dict[str, Any]:
    """Login load and a light /health/live probe at once: hashing must not stall the loop."""
    with ThreadPoolExecutor(2) as pool:
        login_future = pool.submit(run_wrk, server.url, "login", data_path, seconds, profile)
        live_future = pool.submit(run_wrk, server.url, "live", data_path, seconds, profile, 2, 1)
        return {"login": login_future.result(), "live": live_future.result()}


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    memory_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({cpu}), {memory_gb:.0f} GiB RAM, {sys.platform}"


def _ms(microseconds: float) -> float:
    return microseconds / 1000


def print_table(results: dict[str, Any], profile: Profile) -> None:
    print(f"\nmachine: {results['machine']}; date: {results['date']}")
    print(
        f"wrk: {profile.connections} connections, {profile.threads} threads, "
        f"{profile.warmup}s warm-up, {profile.duration}s measured; "
        f"app and floor with {WORKERS} workers each"
    )
    if results.get("app_env"):
        print(f"app settings on top of the benchmark's: {' '.join(results['app_env'])}")
    print()
    header = (
        f"{'':3} {'scenario':44} {'app req/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'non-2xx':>8} {'floor req/s':>12} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in results["scenarios"]:
        app, floor = row["app"], row["floor"]
        failures = app["non2xx"] + app["socket_errors"]
        print(
            f"{row['scenario']:3} {row['label']:44} {app['rps']:10.0f} {_ms(app['p50_us']):7.2f} "
            f"{_ms(app['p99_us']):7.2f} {failures:8d} {floor['rps']:12.0f} {row['ratio']:6.2f}"
        )
    by_letter = {row["scenario"]: row for row in results["scenarios"]}
    if "f" in by_letter:
        live = by_letter["f"]["live_during_login"]["live"]
        raw = results["argon2_raw_per_second"]
        print(
            f"\n/health/live during the login load: p99 {_ms(live['p99_us']):.2f} ms, "
            f"{live['non2xx']} non-2xx"
        )
        print(
            f"raw argon2id verifications/s on all cores: {raw:.0f}; "
            f"login/raw = {by_letter['f']['app']['rps'] / raw:.2f}"
        )
    if {"b", "h1"} <= by_letter.keys():
        ratio = by_letter["h1"]["app"]["p50_us"] / by_letter["b"]["app"]["p50_us"]
        print(f"first page p50, 100k vs 1k tasks: {ratio:.2f}x")
    if {"h1", "h3"} <= by_letter.keys():
        ratio = by_letter["h3"]["app"]["p50_us"] / by_letter["h1"]["app"]["p50_us"]
        print(f"deep cursor page p50 vs first page: {ratio:.2f}x")
    if "webhook_deliveries" in results:
        outcomes = results["webhook_deliveries"]
        print(
            f"webhook deliveries when the runs ended: {outcomes['queued']} queued, "
            f"{outcomes['delivered']} delivered, {outcomes['failing']} failing"
        )
    rss = ", ".join(f"{mb:.0f}" for mb in results.get("memory_mb", []))
    print(f"app worker RSS after the run (MB): {rss}")


if __name__ == "__main__":
    main()
