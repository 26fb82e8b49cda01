"""Account emails through a real SMTP server on loopback (aiosmtpd) and the console backend,
sent by the job queue after the change that causes them has committed."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from taskapi.auth.jobs import PASSWORD_RESET_EMAIL, VERIFICATION_EMAIL
from taskapi.core.config import Settings
from taskapi.core.jobs import Job, JobStatus
from taskapi.core.models import utcnow
from taskapi.core.security import hash_token
from taskapi.worker import create_worker
from tests.support.apps import AppFactory, SettingsFactory, make_client, state_of
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
from tests.support.jobs import run_jobs, wait_until
from tests.support.metrics import scrape, value
from tests.support.processes import free_port
from tests.support.smtp import LINK, SMTP_PASSWORD, SmtpServer, link_in, parts

EMAIL = "ada@example.com"
ANY_TOKEN = re.compile(r"[0-9a-f]{64}")


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


async def stored_jobs(session: AsyncSession) -> list[Job]:
    """The email jobs (not the periodic ones a running worker keeps) as now committed."""
    jobs = list(
        await session.scalars(
            select(Job)
            .where(Job.kind.in_([VERIFICATION_EMAIL.name, PASSWORD_RESET_EMAIL.name]))
            .execution_options(populate_existing=True)
        )
    )
    await session.commit()
    return jobs


async def test_verification_email_over_smtp_carries_a_working_link(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    """The embedded worker of a running app sends it, once, after the registration."""
    app = await app_factory(smtp_settings(worker_enabled=True))
    async with make_client(app) as client:
        await register(client, email="Ada@Example.com", full_name="<b>Ada</b> & co")
        await wait_until(lambda: bool(smtp_server.messages), "the verification email")
        assert len(smtp_server.messages) == 1
        envelope, message = smtp_server.messages[0]
        assert envelope.mail_from == "no-reply@taskapi.test"
        assert envelope.rcpt_tos == [EMAIL]
        assert message["To"] == EMAIL
        assert message["From"] == "taskapi <no-reply@taskapi.test>"
        assert message["Subject"] == "Confirm your email address"
        assert re.fullmatch(r"<[0-9a-f-]{36}@taskapi\.test>", message["Message-ID"])
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
    await wait_until(lambda: _no_jobs(session), "the job to be gone")
    assert len(smtp_server.messages) == 1


async def _no_jobs(session: AsyncSession) -> bool:
    return await stored_jobs(session) == []


async def test_reset_email_over_smtp_carries_a_working_link(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
) -> None:
    app = await app_factory(smtp_settings())
    async with make_client(app) as client:
        await register(client)
        await run_jobs(app)
        smtp_server.messages.clear()
        response = await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
        assert response.status_code == 202
        assert smtp_server.messages == []
        assert await run_jobs(app) == 1
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
        assert await run_jobs(app) == 0
        assert len(smtp_server.messages) == 1


async def test_a_lockout_emails_the_owner_a_reset_link_that_lifts_it(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    """Issue 17: five wrong passwords by anyone kept the owner out for 15 minutes. The
    failure that locks queues one email with a reset link; the reset lifts the lock."""
    app = await app_factory(smtp_settings())
    async with make_client(app) as client:
        await register(client)
        await run_jobs(app)
        smtp_server.messages.clear()
        failures = [await login(client, password="Wr0ng!Passw0rd") for _ in range(4)]
        assert [failure.status_code for failure in failures] == [401] * 4
        assert await run_jobs(app) == 0, "no email before the account locks"
        locking = await login(client, password="Wr0ng!Passw0rd")
        assert locking.status_code == 403
        locked_until = datetime.fromisoformat(locking.json()["locked_until"])
        while_locked = await login(client, password="Wr0ng!Passw0rd")
        assert while_locked.status_code == 403
        assert (await login(client)).status_code == 403

        assert await run_jobs(app) == 1, "one email per lock"
        message = smtp_server.only_message()
        assert message["To"] == EMAIL
        assert message["Subject"] == "Your account is locked"
        text, _html = parts(message)
        assert locked_until.strftime("%Y-%m-%d %H:%M UTC") in text
        token = link_in(message, "reset-password")
        user = await stored_user(session, EMAIL)
        assert user is not None
        assert user.password_reset_token_hash == hash_token(token)

        reset = await client.post(
            f"{API}/auth/reset-password", json={"token": token, "new_password": OTHER_PASSWORD}
        )
        assert reset.status_code == 204
        assert (await login(client, password=OTHER_PASSWORD)).status_code == 200
    await session.commit()
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert (user.failed_login_attempts, user.locked_until) == (0, None)


async def test_the_lockout_email_is_skipped_when_a_newer_link_replaced_its_own(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    """Queued, then the owner asked for a reset link before it ran: only that newer link
    is sent (the lock email's link is dead)."""
    app = await app_factory(smtp_settings())
    async with make_client(app) as client:
        await register(client)
        await run_jobs(app)
        for _ in range(5):
            await login(client, password="Wr0ng!Passw0rd")
        await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
        smtp_server.messages.clear()
        assert await run_jobs(app) == 2
        reset_message = smtp_server.only_message()
        assert reset_message["Subject"] == "Reset your password"


async def test_smtp_login_when_credentials_are_set(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
) -> None:
    app = await app_factory(smtp_settings(smtp_user="mailer", smtp_password=SMTP_PASSWORD))
    async with make_client(app) as client:
        await register(client)
    await run_jobs(app)
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
async def test_failed_send_is_retried_later_and_logged_without_the_link(
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
        response = await client.post(
            f"{API}/auth/register",
            json={"email": EMAIL, "password": STRONG_PASSWORD, "full_name": "Ada"},
        )
    assert response.status_code == 201
    assert await stored_user(session, EMAIL) is not None
    before = utcnow()
    with capture_logs() as logs:
        assert await run_jobs(app) == 1
    assert smtp_server.messages == []
    [failure] = [entry for entry in logs if entry["event"] == "job_failed"]
    assert failure["log_level"] == "warning"
    assert failure["kind"] == "auth.verification_email"
    assert failure["outcome"] == "retry"
    assert failure["attempt"] == 1
    assert not ANY_TOKEN.search(str(failure))
    [job] = await stored_jobs(session)
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 1
    assert job.last_error is not None
    assert not ANY_TOKEN.search(job.last_error)
    # The first retry waits about 10 s (10 % jitter): nothing more is due now.
    assert before + timedelta(seconds=8) < job.run_at < utcnow() + timedelta(seconds=12)
    assert await run_jobs(app) == 0


async def test_an_email_that_failed_goes_out_once_the_mail_server_is_back(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    app = await app_factory(smtp_settings(smtp_port=free_port()))
    async with make_client(app) as client:
        await register(client)
    await run_jobs(app)
    assert smtp_server.messages == []

    later = utcnow() + timedelta(seconds=15)
    # Workers must share the API's JWT_SECRET_KEY: the links derive from it.
    repaired = create_worker(
        smtp_settings(jwt_secret_key=state_of(app)["settings"].secret_key),
        state_of(app)["engine"],
        clock=lambda: later,
    )
    assert await repaired.run_until_idle() == 1
    token = link_in(smtp_server.only_message(), "verify-email")
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.email_verification_token_hash == hash_token(token)
    assert await stored_jobs(session) == []


async def test_console_backend_logs_the_message_with_its_link(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await register(client, full_name="Ada")
    [entry] = await mailbox.messages(EMAIL)
    assert entry["log_level"] == "info"
    assert entry["subject"] == "Confirm your email address"
    assert LINK.fullmatch(entry["link"])
    assert entry["link"] in entry["body"]
    assert entry["body"].startswith("Hello Ada,")


async def test_a_link_replaced_before_its_email_went_out_is_not_sent(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    """Two reset requests before the worker ran: only the live link is mailed."""
    app = await app_factory(smtp_settings())
    async with make_client(app) as client:
        await register(client)
        await run_jobs(app)
        smtp_server.messages.clear()
        for _ in range(2):
            response = await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
            assert response.status_code == 202
        assert await run_jobs(app) == 2
        token = link_in(smtp_server.only_message(), "reset-password")
        user = await stored_user(session, EMAIL)
        assert user is not None
        assert user.password_reset_token_hash == hash_token(token)


async def test_a_slow_mail_server_never_slows_a_request(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
    session: AsyncSession,
) -> None:
    """The request only queues the email: the access log's duration_ms, the request
    duration histogram and the client all see a quick answer; the worker waits for the
    slow mail server later."""
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
    assert asgi_call < delay / 2
    assert smtp_server.messages == []

    [access] = [entry for entry in logs if entry["event"] == "request"]
    assert access["path"] == handler
    assert access["status"] == 202
    assert access["duration_ms"] < delay * 1000 / 2

    def observed(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    by_handler = {"handler": handler, "method": "POST"}
    assert observed("http_request_duration_seconds_count", **by_handler) == 1
    assert observed("http_request_duration_seconds_sum", **by_handler) < delay / 2

    started = time.perf_counter()
    assert await run_jobs(app) == 1
    assert time.perf_counter() - started >= delay
    assert smtp_server.only_message()["Subject"] == "Reset your password"


async def test_a_link_queued_before_a_key_rotation_still_works(
    app_factory: AppFactory,
    smtp_settings: SettingsFactory,
    smtp_server: SmtpServer,
) -> None:
    old_key, new_key = "old-" + "k" * 40, "new-" + "k" * 40
    app = await app_factory(smtp_settings(jwt_secret_key=old_key))
    async with make_client(app) as client:
        await register(client)
    rotated = smtp_settings(jwt_secret_key=new_key, jwt_secret_key_prev=old_key)
    assert await create_worker(rotated, state_of(app)["engine"]).run_until_idle() == 1
    token = link_in(smtp_server.only_message(), "verify-email")
    async with make_client(app) as client:
        response = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert response.status_code == 200
