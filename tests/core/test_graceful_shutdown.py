"""SIGTERM lets an in-flight request finish, then the process exits cleanly.

Runs the real `taskapi serve` in a subprocess; only that process is ever signalled or killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskapi.core.config import Settings

STARTUP_SECONDS = 60
EXIT_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_serving(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise AssertionError(f"the server did not answer within {STARTUP_SECONDS}s")


def _wait_until_refusing(port: int) -> None:
    """The listening socket closes when shutdown begins: proof the signal was handled."""
    deadline = time.monotonic() + EXIT_SECONDS
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except ConnectionRefusedError:
            return
        time.sleep(0.05)
    raise AssertionError("the server kept accepting connections after SIGTERM")


def _read_until_closed(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = _free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields
    }
    env.update(
        APP_ENV="development",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'taskapi.db'}",
        HOST="127.0.0.1",
        PORT=str(port),
        ENABLE_RATE_LIMITING="false",
        ENABLE_METRICS="false",
    )
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskapi", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, port, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=EXIT_SECONDS)


def test_sigterm_finishes_the_request_in_flight_and_exits_0(
    server: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log_path = server
    _wait_until_serving(process, port)
    body = json.dumps({"email": "nobody@example.com", "password": "Wr0ng!Passw0rd"}).encode()
    half = len(body) // 2
    head = (
        "POST /api/v1/auth/login HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n"
        "\r\n"
    ).encode()

    with socket.create_connection(("127.0.0.1", port), timeout=EXIT_SECONDS) as connection:
        connection.sendall(head)
        # The server answers 100 Continue only once the app asks for the body: from here
        # on the request is in flight, not a connection waiting to be read.
        assert connection.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.sendall(body[:half])
        process.send_signal(signal.SIGTERM)
        _wait_until_refusing(port)
        connection.sendall(body[half:])
        response = _read_until_closed(connection)

    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized", response
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(payload)["code"] == "invalid_credentials"
    assert process.wait(timeout=EXIT_SECONDS) == 0, log_path.read_text()
