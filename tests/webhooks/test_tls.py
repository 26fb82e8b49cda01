"""An https delivery connects to the checked address yet verifies the certificate against
the URL's host name (SNI too): a receiver with a certificate for `receiver.test`, reached
at 127.0.0.1 through the test's DNS, with a CA made here by openssl."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Settings
from taskapi.webhooks import delivery
from taskapi.webhooks.models import WebhookDelivery
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.factories import SignedIn
from tests.support.jobs import run_jobs
from tests.support.tasks import TASKS
from tests.support.webhooks import WEBHOOKS, FakeDns

pytestmark = pytest.mark.needs_services("openssl", reason="makes a CA and a server certificate")


@dataclass(frozen=True)
class TlsReceiver:
    port: int
    ca: Path
    server_names: list[str]
    """The SNI name of every TLS handshake."""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603, S607 (a test's own command)


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[TlsReceiver]:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=taskapi test CA", "-keyout", "ca.key", "-out", "ca.pem",
        cwd=tmp_path,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=receiver.test",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:receiver.test\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem",
        cwd=tmp_path,
    )  # fmt: skip
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")

    def note_server_name(_socket: Any, name: str | None, _context: Any) -> None:
        names.append(name or "")

    context.sni_callback = note_server_name

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield TlsReceiver(port=server.server_address[1], ca=tmp_path / "ca.pem", server_names=names)
    server.shutdown()
    server.server_close()


@pytest.fixture
async def hook_app(
    app_factory: AppFactory, make_settings: SettingsFactory, settings: Settings
) -> FastAPI:
    return await app_factory(
        make_settings(webhook_allow_private_targets=True, jwt_secret_key=settings.secret_key)
    )


async def deliver_to(app: FastAPI, signed_in: SignedIn, url: str) -> None:
    async with make_client(app) as http:
        response = await http.post(
            WEBHOOKS, json={"url": url, "events": ["task.created"]}, headers=signed_in.headers
        )
        assert response.status_code == 201, response.text
        created = await http.post(TASKS, json={"title": "Secure"}, headers=signed_in.headers)
        assert created.status_code == 201
    assert await run_jobs(app) == 1


async def test_https_verifies_the_name_while_connecting_to_the_checked_address(
    hook_app: FastAPI,
    alice: SignedIn,
    dns: FakeDns,
    tls_receiver: TlsReceiver,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trusted = ssl.create_default_context(cafile=str(tls_receiver.ca))
    monkeypatch.setattr(delivery, "_tls", lambda: trusted)
    dns.names["receiver.test"] = ["127.0.0.1"]
    await deliver_to(hook_app, alice, f"https://receiver.test:{tls_receiver.port}/hook")
    [row] = list(await session.scalars(select(WebhookDelivery)))
    assert (row.status_code, row.last_error) == (204, None)
    assert row.delivered_at is not None
    assert tls_receiver.server_names == ["receiver.test"]


async def test_https_to_a_name_the_certificate_does_not_cover_fails(
    hook_app: FastAPI,
    alice: SignedIn,
    dns: FakeDns,
    tls_receiver: TlsReceiver,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trusted = ssl.create_default_context(cafile=str(tls_receiver.ca))
    monkeypatch.setattr(delivery, "_tls", lambda: trusted)
    dns.names["impostor.test"] = ["127.0.0.1"]
    await deliver_to(hook_app, alice, f"https://impostor.test:{tls_receiver.port}/hook")
    rows: list[Any] = list(await session.scalars(select(WebhookDelivery)))
    [row] = rows
    assert (row.status_code, row.delivered_at) == (None, None)
    assert "CERTIFICATE_VERIFY_FAILED" in (row.last_error or "")
    assert row.next_attempt_at is not None
