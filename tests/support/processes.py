"""A pytest plugin for what a test needs beyond Python: the services it names, and real
processes of its own. The root conftest.py registers it (`pytest_plugins`).

`@pytest.mark.needs_services(*names, reason=...)` names what a test needs and why:

- programs: `initdb` and `pg_ctl` (PostgreSQL's, for `own_postgres`), `pgbouncer` (for
  `own_pgbouncer`), `redis-server` (for `own_redis`), `uvx` (a pinned tool, tests/clients/),
  `chromium` (Debian's, for the browser tests in tests/web), `openssl` (a CA for the webhook
  TLS test). A missing one skips the test, saying what is missing; with
  TASKAPI_TEST_REQUIRE_SERVICES=1 (as `.ci/run` sets) it fails it.
- backends: `postgresql` (TEST_DATABASE_URL) and `redis` (TEST_REDIS_URL). Each pass picks
  its backends, so a test that needs one is skipped on the passes without it, flag or not; a
  configured backend that cannot be reached stops the run (tests/conftest.py).

A test that uses `own_postgres` or `own_redis` without naming their programs is a usage
error, so a test cannot lose its marker unnoticed.

Fixtures: `own_redis`, `own_postgres` and `own_pgbouncer`, servers only this test uses, so it
may stop and restart them (the machine's shared PostgreSQL and Redis are never touched; a
PgBouncer fronts the pass's PostgreSQL server), `serve`, `python -m taskapi serve` on a free
port, and `smtp_server`, an SMTP server (aiosmtpd, in a thread) on a free port that keeps
what it receives. Every process is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import make_url

from tests.support.backends import PGBOUNCER, POSTGRES_URL, REDIS_URL, create_postgres_database
from tests.support.smtp import SmtpServer

REQUIRE_SERVICES_VARIABLE = "TASKAPI_TEST_REQUIRE_SERVICES"
POSTGRES_PROGRAMS = ("initdb", "pg_ctl")
CHROMIUM = "/usr/lib/chromium/chromium"
"""Debian's real chromium binary (not the /usr/bin wrapper script), which Playwright drives."""
PROGRAMS = (*POSTGRES_PROGRAMS, "pgbouncer", "redis-server", "uvx", "chromium", "openssl")
ROOTLESS_PROGRAMS = (*POSTGRES_PROGRAMS, "pgbouncer")
"""They refuse to run as root, and run as the OS user postgres then."""
BACKENDS = {
    "postgresql": ("PostgreSQL", "TEST_DATABASE_URL", POSTGRES_URL),
    "redis": ("Redis", "TEST_REDIS_URL", REDIS_URL),
}
FIXTURE_PROGRAMS = {
    "own_postgres": POSTGRES_PROGRAMS,
    "own_redis": ("redis-server",),
    "own_pgbouncer": ("pgbouncer",),
}

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
PG_TIMEOUT_SECONDS = 60

_failure = pytest.StashKey[str]()


def services_required() -> bool:
    """Whether a missing program fails the tests that need it (CI) instead of skipping them."""
    return os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1"


def find_program(name: str) -> str | None:
    """`name`'s path. PostgreSQL's server programs are looked up first in Debian's versioned
    directories (the newest version), which are not on PATH, then on PATH; chromium only
    where Debian's package puts its binary."""
    if name == "chromium":
        return CHROMIUM if os.access(CHROMIUM, os.X_OK) else None
    if name in POSTGRES_PROGRAMS:
        candidates = sorted(
            glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
            key=lambda path: int(Path(path).parts[-3]),
        )
        if candidates:
            return candidates[-1]
    return shutil.which(name)


@functools.cache
def missing_program(name: str) -> str | None:
    """Why program `name` cannot be used here, or None when it can."""
    if find_program(name) is None:
        if name == "chromium":
            return (
                f"needs Debian's chromium, not found at {CHROMIUM} "
                "(apt-get install -y --no-install-recommends chromium)"
            )
        where = (
            "on PATH or in /usr/lib/postgresql/*/bin" if name in POSTGRES_PROGRAMS else "on PATH"
        )
        return f"needs {name}, not found {where}"
    if name in ROOTLESS_PROGRAMS and os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return f"needs runuser: {name} refuses to run as root, and runs as user postgres"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return f"needs an OS user postgres: {name} refuses to run as root"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_services(*names, reason): the test needs these programs "
        f"({', '.join(PROGRAMS)}) or backends ({', '.join(BACKENDS)}); skipped without "
        f"them, and failed for a missing program when {REQUIRE_SERVICES_VARIABLE}=1",
    )


def _needs(item: pytest.Item) -> tuple[list[str], list[str]]:
    """(names, reasons) of every needs_services marker on the item, checked for use."""
    names: list[str] = []
    reasons: list[str] = []
    for marker in item.iter_markers("needs_services"):
        unknown = [name for name in marker.args if name not in (*PROGRAMS, *BACKENDS)]
        reason = marker.kwargs.get("reason")
        if not marker.args or unknown or not isinstance(reason, str) or not reason:
            raise pytest.UsageError(
                f"{item.nodeid}: needs_services takes names among "
                f"{', '.join((*PROGRAMS, *BACKENDS))} and a reason= (got {marker})"
            )
        names.extend(marker.args)
        reasons.append(reason)
    for fixture, programs in FIXTURE_PROGRAMS.items():
        if fixture in getattr(item, "fixturenames", ()) and not set(programs) <= set(names):
            raise pytest.UsageError(
                f"{item.nodeid} uses {fixture}: mark it "
                f"needs_services({', '.join(map(repr, programs))}, reason=...)"
            )
    return names, reasons


def _unmet(names: list[str]) -> tuple[list[str], list[str]]:
    """What is missing here: (backends this pass has not, programs not installed)."""
    backends: list[str] = []
    programs: list[str] = []
    for name in dict.fromkeys(names):
        if name in BACKENDS:
            label, variable, url = BACKENDS[name]
            if url is None:
                backends.append(f"needs {label} ({variable} is not set)")
        elif (problem := missing_program(name)) is not None:
            programs.append(problem)
    return backends, programs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skips (or, for a missing program under the CI flag, fails) what cannot run here."""
    for item in items:
        names, reasons = _needs(item)
        backends, programs = _unmet(names)
        why = "; ".join(reasons)
        if backends:
            item.add_marker(pytest.mark.skip(reason=f"{', '.join(backends)}: {why}"))
        elif programs and services_required():
            item.stash[_failure] = (
                f"{'; '.join(programs)}: {why} "
                f"({REQUIRE_SERVICES_VARIABLE}=1: a missing program fails the test)"
            )
        elif programs:
            item.add_marker(pytest.mark.skip(reason=f"{'; '.join(programs)}: {why}"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    failure = item.stash.get(_failure, None)
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM this one process (by its PID), then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _program(name: str) -> str:
    path = find_program(name)
    if path is None:
        raise RuntimeError(missing_program(name))
    return path


@dataclass
class OwnRedis:
    """A redis-server only this test uses, so the test may stop and restart it."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (a fixed argument list, no shell)
            [
                _program("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _as_postgres(command: list[str]) -> list[str]:
    """initdb, postgres and pgbouncer refuse to run as root: run them as the postgres OS user
    then."""
    if os.geteuid() != 0:
        return command
    return [_program("runuser"), "-u", "postgres", "--", *command]


@dataclass
class OwnPostgres:
    """A throw-away cluster made with initdb on a free port: trust auth for user postgres on
    127.0.0.1 only."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def server_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        result = subprocess.run(  # noqa: S603 (fixed argument lists, no shell)
            _as_postgres(list(command)),
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT_SECONDS * 2,
            check=False,
        )
        if result.returncode != 0:
            log = self.directory / "server.log"
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{server_log}"
            )

    def init(self) -> None:
        self._run(
            _program("initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            _program("pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.directory / "server.log"),
            "--wait",
            "--timeout",
            str(PG_TIMEOUT_SECONDS),
            "--options",
            options,
            "start",
        )

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, everything committed is kept."""
        self._run(
            _program("pg_ctl"),
            "--pgdata",
            str(self.data),
            "--mode",
            "fast",
            "--wait",
            "--timeout",
            str(PG_TIMEOUT_SECONDS),
            "stop",
        )

    async def create_database(self, name: str = "taskapi") -> str:
        return await create_postgres_database(self.server_url, name)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    directory = Path(tempfile.mkdtemp(prefix="taskapi-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user="postgres", group="postgres")
    cluster = OwnPostgres(directory=directory)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class OwnPgBouncer:
    """PgBouncer in transaction mode on a free port, in front of the PostgreSQL server at
    `server_url`: any database name, every client logged in as that URL's user. Its server
    pool is smaller than the app's pools, so clients really do share server connections;
    `max_server_connections` (0: no cap) caps them over all databases. A server connection
    idle for 10 s is closed, so the databases of tests that ended hold none."""

    directory: Path
    server_url: str
    pool_size: int = 8
    max_server_connections: int = 40
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """`database_url` (a database on `server_url`'s server) reached through PgBouncer."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def start(self) -> None:
        server = make_url(self.server_url)
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={server.host or '127.0.0.1'} port={server.port or 5432} "
            f"user={server.username or 'postgres'}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmax_client_conn = 2000\n"
            f"max_user_connections = {self.max_server_connections}\n"
            "server_idle_timeout = 10\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n",
            encoding="utf-8",
        )
        if os.geteuid() == 0:
            shutil.chown(self.directory, user="postgres", group="postgres")
            shutil.chown(config, user="postgres", group="postgres")
        self.process = subprocess.Popen(  # noqa: S603 (a fixed argument list, no shell)
            _as_postgres([_program("pgbouncer"), str(config)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.directory / "pgbouncer.log"
                raise RuntimeError(
                    f"pgbouncer exited at start:\n{log.read_text(errors='replace')}"
                    if log.exists()
                    else "pgbouncer exited at start"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer on port {self.port} did not listen in time")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@contextlib.contextmanager
def running_pgbouncer(
    server_url: str, *, pool_size: int = 8, max_server_connections: int = 40
) -> Iterator[OwnPgBouncer]:
    directory = Path(tempfile.mkdtemp(prefix="taskapi-pgbouncer-"))
    bouncer = OwnPgBouncer(
        directory=directory,
        server_url=server_url,
        pool_size=pool_size,
        max_server_connections=max_server_connections,
    )
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def own_pgbouncer() -> Iterator[OwnPgBouncer]:
    """A PgBouncer only this test uses, in front of the pass's PostgreSQL server."""
    if POSTGRES_URL is None:
        raise pytest.UsageError("own_pgbouncer: mark the test needs_services('postgresql')")
    with running_pgbouncer(POSTGRES_URL, pool_size=2) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def shared_pgbouncer() -> Iterator[OwnPgBouncer | None]:
    """With TEST_PGBOUNCER=1, one PgBouncer in transaction mode in front of TEST_DATABASE_URL
    for the whole run; its absence then stops the run rather than skip anything."""
    if not PGBOUNCER or POSTGRES_URL is None:
        yield None
        return
    problem = missing_program("pgbouncer")
    if problem is not None:
        pytest.exit(f"TEST_PGBOUNCER=1 {problem}", returncode=3)
    # 40 server connections a database: the races hold 31 requests at a lock at once.
    with running_pgbouncer(POSTGRES_URL, pool_size=40, max_server_connections=0) as bouncer:
        yield bouncer


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        _stop(self.process)


ServeFactory = Callable[[dict[str, str]], Server]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port())
    controller = Controller(
        server,
        hostname="127.0.0.1",
        port=server.port,
        authenticator=server.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Starts `python -m taskapi serve` with the given environment on a free port and waits
    until it answers /health/live; stops every one it started (by PID) at the end."""
    started: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        port = free_port()
        workdir = tmp_path / f"serve-{port}"
        workdir.mkdir()
        stderr_path = workdir / "stderr.log"
        stdout_path = workdir / "stdout.log"
        base_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TEST_", "PROMETHEUS_MULTIPROC"))
        }
        with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
            process = subprocess.Popen(
                [sys.executable, "-m", "taskapi", "serve"],
                cwd=workdir,
                env={
                    **base_env,
                    "HOST": "127.0.0.1",
                    "PORT": str(port),
                    "LOG_LEVEL": "WARNING",
                    "JWT_SECRET_KEY": "serve-test-secret-" + "x" * 32,
                    "EMAIL_BACKEND": "console",
                    **env,
                },
                stdout=stdout,
                stderr=stderr,
            )
        server = Server(base_url=f"http://127.0.0.1:{port}", process=process, workdir=workdir)
        started.append(server)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = stderr_path.read_text(errors="replace")
                raise RuntimeError(f"taskapi serve exited with {process.returncode}:\n{log}")
            try:
                if httpx.get(f"{server.base_url}/health/live", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"taskapi serve on port {port} did not answer in time")

    yield start
    for server in started:
        server.stop()
