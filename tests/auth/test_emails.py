"""Account emails through a real SMTP server on loopback (aiosmtpd) and the console backend."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message
from structlog.testing import capture_logs

from taskapi.core.config import Settings
from taskapi.core.email import OutgoingEmail
from tests.support.apps import (
    AppFactory,
    SettingsFactory,
    make_client,
    state_of,
    with_lifespan_state,
)
from tests.support.auth import (
    API,
    OTHER_PASSWORD,
    STRONG_PASSWORD,
    Mailbox,
    login,
    register,
    stored_user,
)
from tests.support.factories import create_user
from tests.support.metrics import scrape, value
from tests.support.processes import free_port
from tests.support.smtp import LINK, SMTP_PASSWORD, SmtpServer, link_in, parts

EMAIL = "ada@example.com"
ANY_TOKEN = re.compile(r"[0-9a-f]{64}")


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
def smtp_settings(make_settings: SettingsFactory, smtp_server: SmtpServer) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "email_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
            "smtp_from": "taskapi <no-reply@taskapi.test>",
            "smtp_timeout_seconds": 2,
            **overrides,
        }
        return make_settings(**values)

    return make


async def test_verification_email_over_smtp_carries_a_working_link(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    app = await app_factory(smtp_settings())
    async with make_client(app) as client:
        await register(client, email="Ada@Example.com", full_name="<b>Ada</b> & co")
        envelope, message = smtp_server.messages[0]
        assert envelope.mail_from == "no-reply@taskapi.test"
        assert envelope.rcpt_tos == [EMAIL]
        assert message["To"] == EMAIL
        assert message["From"] == "taskapi <no-reply@taskapi.test>"
        assert message["Subject"] == "Confirm your email address"
        text, html = parts(message)
        assert "Hello <b>Ada</b> & co," in text
        assert "Hello &lt;b&gt;Ada&lt;/b&gt; &amp; co," in html
        token = link_in(message, "verify-email")

        response = await client.post(f"{API}/auth/verify-email", json={"token": token})
        assert response.status_code == 200
        assert response.json()["is_active"] is True
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.is_active is True
    assert smtp_server.logins == []


async def test_reset_email_over_smtp_carries_a_working_link(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
) -> None:
    app = await app_factory(smtp_settings())
    async with make_client(app) as client:
        await register(client)
        smtp_server.messages.clear()
        response = await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
        assert response.status_code == 202
        message = smtp_server.only_message()
        assert message["Subject"] == "Reset your password"
        token = link_in(message, "reset-password")

        reset = await client.post(
            f"{API}/auth/reset-password", json={"token": token, "new_password": OTHER_PASSWORD}
        )
        assert reset.status_code == 204
        assert (await login(client, password=OTHER_PASSWORD)).status_code == 200

        unknown = await client.post(
            f"{API}/auth/forgot-password", json={"email": "nobody@example.com"}
        )
        assert unknown.status_code == 202
        assert len(smtp_server.messages) == 1


async def test_smtp_login_when_credentials_are_set(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
) -> None:
    app = await app_factory(smtp_settings(smtp_user="mailer", smtp_password=SMTP_PASSWORD))
    async with make_client(app) as client:
        await register(client)
    assert smtp_server.logins == [(b"mailer", SMTP_PASSWORD.encode())]
    link_in(smtp_server.only_message(), "verify-email")


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"smtp_port_closed": True}, id="nothing-listening"),
        pytest.param({"smtp_starttls": True}, id="server-without-starttls"),
        pytest.param({"smtp_user": "mailer", "smtp_password": "wrong"}, id="bad-login"),
    ],
)
async def test_failed_send_is_logged_and_the_request_still_succeeds(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
    overrides: dict[str, Any],
) -> None:
    if overrides.pop("smtp_port_closed", False):
        overrides["smtp_port"] = free_port()
    app = await app_factory(smtp_settings(**overrides))
    async with make_client(app) as client:
        with capture_logs() as logs:
            response = await client.post(
                f"{API}/auth/register",
                json={"email": EMAIL, "password": STRONG_PASSWORD, "full_name": "Ada"},
            )
    assert response.status_code == 201
    assert await stored_user(session, EMAIL) is not None
    assert smtp_server.messages == []
    [failure] = [entry for entry in logs if entry["event"] == "email_send_failed"]
    assert failure["log_level"] == "warning"
    assert failure["to"] == EMAIL
    assert failure["subject"] == "Confirm your email address"
    assert failure["error_type"]
    assert not ANY_TOKEN.search(str(failure))


async def test_console_backend_logs_the_message_with_its_link(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await register(client, full_name="Ada")
    [entry] = mailbox.messages(EMAIL)
    assert entry["log_level"] == "info"
    assert entry["subject"] == "Confirm your email address"
    assert LINK.fullmatch(entry["link"])
    assert entry["link"] in entry["body"]
    assert entry["body"].startswith("Hello Ada,")


class RecordingBackend:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def send(self, message: OutgoingEmail) -> None:
        self.events.append(f"email to {message.to}")


async def test_email_goes_out_only_after_the_response_is_sent(app: FastAPI) -> None:
    events: list[str] = []
    state_of(app)["email_backend"] = RecordingBackend(events)
    body = b'{"email": "ada@example.com", "password": "Str0ng!Passw0rd", "full_name": "Ada"}'
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/auth/register",
        "raw_path": b"/api/v1/auth/register",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            events.append(f"status {message['status']}")
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            events.append("response complete")

    await with_lifespan_state(app)(scope, receive, send)
    assert events == ["status 201", "response complete", f"email to {EMAIL}"]


async def test_latency_figures_end_with_the_response_not_with_the_email_sent_after_it(
    app_factory: Callable[[Settings], Any],
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    """The access log's duration_ms and the request duration histogram measure what the
    client waits for; the slow mail server is only waited for after the response."""
    delay = 1.0
    smtp_server.data_delay_seconds = delay
    app = await app_factory(smtp_settings(enable_metrics=True, smtp_timeout_seconds=5))
    await create_user(session, email=EMAIL)
    handler = f"{API}/auth/forgot-password"
    async with make_client(app) as client:
        before = await scrape(client)
        with capture_logs() as logs:
            started = time.perf_counter()
            response = await client.post(handler, json={"email": EMAIL})
            asgi_call = time.perf_counter() - started
        after = await scrape(client)
    assert response.status_code == 202
    # The slow send really ran inside the request's ASGI call, after the response.
    assert smtp_server.only_message()["Subject"] == "Reset your password"
    assert asgi_call >= delay

    [access] = [entry for entry in logs if entry["event"] == "request"]
    assert access["path"] == handler
    assert access["status"] == 202
    assert access["duration_ms"] < delay * 1000 / 2

    def observed(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    by_handler = {"handler": handler, "method": "POST"}
    assert observed("http_request_duration_seconds_count", **by_handler) == 1
    assert observed("http_request_duration_seconds_sum", **by_handler) < delay / 2
    # The unlabelled high-resolution histogram saw this request and one /metrics scrape.
    assert observed("http_request_duration_highr_seconds_count") == 2
    assert observed("http_request_duration_highr_seconds_sum") < delay / 2
