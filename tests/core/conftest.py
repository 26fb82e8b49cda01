"""Real processes for operations tests: a redis-server of the test's own, and `taskapi serve`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


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


@dataclass
class OwnRedis:
    """A redis-server only this test uses, so the test may stop and restart it."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed; these tests need one of their own")
        self.process = subprocess.Popen(  # noqa: S603 (a fixed argument list, no shell)
            [
                server,
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


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        _stop(self.process)


ServeFactory = Callable[[dict[str, str]], Server]


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
        base_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TEST_", "PROMETHEUS_MULTIPROC"))
        }
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "taskapi", "serve"],
                cwd=workdir,
                env={
                    **base_env,
                    "HOST": "127.0.0.1",
                    "PORT": str(port),
                    "LOG_LEVEL": "WARNING",
                    "JWT_SECRET_KEY": "serve-test-secret-" + "x" * 32,
                    **env,
                },
                stdout=subprocess.DEVNULL,
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
