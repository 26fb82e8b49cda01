"""Email delivery: the message and the backends that send it (console, SMTP).

Requests never send mail themselves: a feature queues a job (core/jobs.py) in the
transaction of the change, and the worker sends it after the commit, retrying when the mail
server fails. What the messages say is up to the features (auth/emails.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Protocol

import aiosmtplib
import structlog

from taskapi.core.config import Settings

log = structlog.get_logger("taskapi.email")


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str
    link: str
    message_id: str | None = None
    """The same for every attempt at one message, so a mail client that sees it twice
    (a retry after a crash between the send and its record) may show it once."""


def message_id(key: uuid.UUID, sender: str) -> str:
    """A Message-ID made from `key` (the id of the job that sends the message)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "taskapi.invalid"
    return f"<{key}@{domain}>"


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
            message_id=message.message_id,
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
        if message.message_id is not None:
            mime["Message-ID"] = message.message_id
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
