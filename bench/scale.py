"""`bench/run --scale`: many instances against few PostgreSQL connections, with and without
PgBouncer.

Four app instances with two workers each share one database that admits 30 connections
(`ALTER DATABASE ... CONNECTION LIMIT 30` for a role of the run's own, which is no superuser
so the limit holds: the same refusal, SQLSTATE 53300, that a low max_connections gives,
without restarting the machine's shared server or taking its connections from anyone else).
Without a pooler each worker's engine wants up to DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW
connections of its own; with PgBouncer in transaction mode all of them share 25 server
connections. wrk loads every instance at once (one wrk per instance), for scenarios (a) and
(c), and the peak of the database's server connections is sampled during each run.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import make_url

from bench.harness import (
    REDIS_URL,
    SERVE,
    SERVER_URL,
    Profile,
    Server,
    admin,
    bench_database,
    free_port,
    login,
    run_wrk,
    seed,
    start_server,
    stop_server,
    write_data,
)

INSTANCES = 4
WORKERS_PER_INSTANCE = 2
CONNECTION_LIMIT = 30
PGBOUNCER_POOL_SIZE = 25
"""Server connections PgBouncer may open: under the limit, with room for an operator."""
SCENARIOS = [("a", "get_task", "GET /tasks/{id}"), ("c", "create_task", "POST /tasks")]
CONNECTIONS_PER_INSTANCE = 50
"""wrk connections on each instance (fewer in --smoke): enough clients at once that eight
workers' pools want more than the database admits."""


class ConnectionSampler:
    """Counts the database's server connections twice a second while a run lasts: the most
    seen is what the setup really asked of PostgreSQL."""

    def __init__(self, server_url: str, database: str) -> None:
        self.server_url = server_url
        self.database = database
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()), daemon=True)

    async def _sample(self) -> None:
        connection = await asyncpg.connect(self.server_url)
        try:
            while not self._stop.is_set():
                count = await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self.database
                )
                self.peak = max(self.peak, int(count))
                await asyncio.sleep(0.5)
        finally:
            await connection.close()

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextmanager
def pgbouncer(server_url: str, user: str, workdir: Path) -> Iterator[int]:
    """PgBouncer (Debian's) in transaction mode in front of `server_url`, logging in to it
    as `user`; yields its port."""
    program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(program).exists():
        raise SystemExit("pgbouncer is not installed (apt-get install pgbouncer)")
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=workdir))
    port = free_port()
    server = make_url(server_url)
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432} user={user}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\n"
        f"default_pool_size = {PGBOUNCER_POOL_SIZE}\nmax_client_conn = 2000\n"
        f"logfile = {directory / 'pgbouncer.log'}\n",
        encoding="utf-8",
    )
    command = [program, str(config)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        postgres = pwd.getpwnam("postgres")
        os.chown(directory, postgres.pw_uid, postgres.pw_gid)
        os.chown(config, postgres.pw_uid, postgres.pw_gid)
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(  # noqa: S603 (a fixed argument list)
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"pgbouncer did not start; see {directory}") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def bench_role() -> Iterator[str]:
    """A login role of this run's own, no superuser, dropped at the end."""
    role = f"taskapi_scale_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(SERVER_URL, f'CREATE ROLE "{role}" LOGIN'))
    try:
        yield role
    finally:
        asyncio.run(admin(SERVER_URL, f'DROP ROLE IF EXISTS "{role}"'))


def start_instances(env: dict[str, str], workdir: Path, label: str) -> list[Server]:
    servers: list[Server] = []
    try:
        for index in range(INSTANCES):
            servers.append(
                start_server(
                    f"{label}-{index}",
                    SERVE,
                    {**env, "WORKERS": str(WORKERS_PER_INSTANCE)},
                    workdir,
                    free_port(),
                )
            )
    except Exception:
        for server in servers:
            stop_server(server)
        raise
    return servers


def load_all(
    servers: list[Server], mode: str, data_path: Path, seconds: int, profile: Profile
) -> dict[str, Any]:
    """One wrk per instance at once; summed."""
    connections = min(CONNECTIONS_PER_INSTANCE, profile.connections)
    with ThreadPoolExecutor(len(servers)) as pool:
        runs = list(
            pool.map(
                lambda server: run_wrk(
                    server.url, mode, data_path, seconds, profile, connections, 1
                ),
                servers,
            )
        )
    return {
        "rps": sum(run["rps"] for run in runs),
        "p99_us": max(run["p99_us"] for run in runs),
        "p50_us": sorted(run["p50_us"] for run in runs)[len(runs) // 2],
        "non2xx": sum(run["non2xx"] for run in runs),
        "socket_errors": sum(run["socket_errors"] for run in runs),
    }


def run(profile: Profile, workdir: Path) -> dict[str, Any]:
    secret = secrets.token_urlsafe(48)
    results: dict[str, Any] = {"rows": []}
    with bench_role() as role, bench_database() as database_url, ExitStack() as stack:
        name = database_url.rsplit("/", 1)[1]
        asyncio.run(admin(SERVER_URL, f'ALTER DATABASE "{name}" OWNER TO "{role}"'))
        sqlalchemy_url = (
            make_url(database_url)
            .set(drivername="postgresql+asyncpg", username=role)
            .render_as_string(hide_password=False)
        )
        common = {
            "APP_ENV": "production",
            "JWT_SECRET_KEY": secret,
            "HOST": "127.0.0.1",
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": f"taskapi-scale-{uuid.uuid4().hex[:8]}:",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_USER_PER_MINUTE": "100000000",
            "RATE_LIMIT_ANONYMOUS_PER_MINUTE": "100000000",
            "MIGRATION_DATABASE_URL": sqlalchemy_url,
        }
        # Migrate and seed, then limit the database for the measured runs.
        subprocess.run(
            [sys.executable, "-m", "taskapi", "migrate", "upgrade"],
            env={**os.environ, **common, "DATABASE_URL": sqlalchemy_url},
            check=True,
        )
        seeded = asyncio.run(seed(database_url, profile))
        limit = f'ALTER DATABASE "{name}" CONNECTION LIMIT {CONNECTION_LIMIT}'
        asyncio.run(admin(SERVER_URL, limit))
        bouncer_port = stack.enter_context(pgbouncer(SERVER_URL, role, workdir))
        pooled_url = (
            make_url(sqlalchemy_url)
            .set(host="127.0.0.1", port=bouncer_port)
            .render_as_string(hide_password=False)
        )
        setups = [
            ("direct", {**common, "DATABASE_URL": sqlalchemy_url}),
            (
                "pgbouncer",
                {**common, "DATABASE_URL": pooled_url, "DATABASE_POOLER": "pgbouncer"},
            ),
        ]
        for label, env in setups:
            servers = start_instances(env, workdir, label)
            try:
                data = {
                    "password": "unused",
                    "threads": [
                        {
                            "token": login(servers[0].url, user["email"]),
                            "login_email": user["email"],
                            "tasks": user["task_ids"],
                            "patch_tasks": [],
                        }
                        for user in seeded.thread_users
                    ],
                }
                data_path = workdir / f"scale-{label}.lua"
                write_data(data_path, data)
                for letter, mode, scenario in SCENARIOS:
                    if profile.warmup:
                        load_all(servers, mode, data_path, profile.warmup, profile)
                    with ConnectionSampler(SERVER_URL, name) as sampler:
                        measured = load_all(servers, mode, data_path, profile.duration, profile)
                    results["rows"].append(
                        {
                            "setup": label,
                            "scenario": letter,
                            "label": scenario,
                            "server_connections": sampler.peak,
                            **measured,
                        }
                    )
            finally:
                for server in servers:
                    stop_server(server)
    return results


def print_table(results: dict[str, Any], machine: str, profile: Profile) -> None:
    print(f"\nmachine: {machine}")
    print(
        f"{INSTANCES} instances x {WORKERS_PER_INSTANCE} workers, database limited to "
        f"{CONNECTION_LIMIT} connections; PgBouncer pool {PGBOUNCER_POOL_SIZE}; wrk "
        f"{min(CONNECTIONS_PER_INSTANCE, profile.connections)} connections per instance, "
        f"{profile.duration}s measured\n"
    )
    header = (
        f"{'setup':10} {'scenario':20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'server conns':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in results["rows"]:
        errors = row["non2xx"] + row["socket_errors"]
        print(
            f"{row['setup']:10} {row['scenario'] + ' ' + row['label']:20} {row['rps']:8.0f} "
            f"{row['p50_us'] / 1000:8.2f} {row['p99_us'] / 1000:8.2f} {errors:7d} "
            f"{row['server_connections']:12d}"
        )
