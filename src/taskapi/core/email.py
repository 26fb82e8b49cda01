"""Email delivery: the message, the backends that send it (console, SMTP) and the outbox that
sends it once the response is out.

Mail leaves after the response is sent and a failure is only logged: a slow or broken mail
server must never delay or fail the request that caused the message. What the messages say
is up to the features (auth/emails.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import structlog
from fastapi import BackgroundTasks

from taskapi.core.config import Settings

log = structlog.get_logger("taskapi.email")


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str
    link: str


class EmailBackend(Protocol):
    async def send(self, message: OutgoingEmail) -> None: ...


class ConsoleEmailBackend:
    """Development: the message, link included, goes to the log instead of a mailbox."""

    async def send(self, message: OutgoingEmail) -> None:
        log.info(
            "email",
            to=message.to,
            subject=message.subject,
            link=message.link,
            body=message.text,
        )


class SmtpEmailBackend:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, message: OutgoingEmail) -> None:
        settings = self._settings
        mime = EmailMessage()
        mime["From"] = settings.smtp_from
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime.set_content(message.text)
        mime.add_alternative(message.html, subtype="html")
        with_login = settings.smtp_user is not None and settings.smtp_password is not None
        await aiosmtplib.send(
            mime,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user if with_login else None,
            password=settings.smtp_password if with_login else None,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )


def create_email_backend(settings: Settings) -> EmailBackend:
    if settings.email_backend == "smtp":
        return SmtpEmailBackend(settings)
    return ConsoleEmailBackend()


async def deliver(backend: EmailBackend, message: OutgoingEmail) -> None:
    """Send, and log a failure without the message: its body may hold a live token."""
    try:
        await backend.send(message)
    except Exception as error:
        log.warning(
            "email_send_failed",
            to=message.to,
            subject=message.subject,
            error_type=type(error).__name__,
            error=str(error),
        )


class Outbox:
    """What a service hands its messages to: they go out once the response is sent."""

    def __init__(self, backend: EmailBackend, background_tasks: BackgroundTasks) -> None:
        self._backend = backend
        self._background_tasks = background_tasks

    def send(self, message: OutgoingEmail) -> None:
        self._background_tasks.add_task(deliver, self._backend, message)
