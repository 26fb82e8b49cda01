"""Account emails (verification, password reset) and the backends that deliver them.

Mail leaves after the response is sent and a failure is only logged: a slow or broken mail
server must never delay or fail a registration.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Annotated, Protocol

import aiosmtplib
import structlog
from fastapi import BackgroundTasks, Depends, Request

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
    """Send, and log a failure without the message: its body holds a live token."""
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


async def get_outbox(request: Request, background_tasks: BackgroundTasks) -> Outbox:
    return Outbox(request.app.state.email_backend, background_tasks)


OutboxDep = Annotated[Outbox, Depends(get_outbox)]


def verification_email(*, settings: Settings, to: str, full_name: str, token: str) -> OutgoingEmail:
    link = f"{settings.frontend_url}/verify-email?token={token}"
    return _with_link(
        to=to,
        full_name=full_name,
        subject="Confirm your email address",
        lead="Please confirm your email address to start using your account.",
        action="Confirm email address",
        expiry="The link works once and expires in 24 hours.",
        link=link,
    )


def password_reset_email(
    *, settings: Settings, to: str, full_name: str, token: str
) -> OutgoingEmail:
    link = f"{settings.frontend_url}/reset-password?token={token}"
    return _with_link(
        to=to,
        full_name=full_name,
        subject="Reset your password",
        lead="Someone asked to reset the password of your account. If it was you, "
        "choose a new password here.",
        action="Choose a new password",
        expiry="The link works once and expires in 1 hour. If you did not ask for it, "
        "ignore this email: your password stays as it is.",
        link=link,
    )


def _with_link(
    *, to: str, full_name: str, subject: str, lead: str, action: str, expiry: str, link: str
) -> OutgoingEmail:
    text = f"Hello {full_name},\n\n{lead}\n\n{link}\n\n{expiry}\n"
    name, safe_link = html.escape(full_name), html.escape(link, quote=True)
    body = (
        "<!doctype html><html><body>"
        f"<p>Hello {name},</p><p>{html.escape(lead)}</p>"
        f'<p><a href="{safe_link}">{html.escape(action)}</a></p>'
        f"<p>{html.escape(expiry)}</p>"
        "</body></html>"
    )
    return OutgoingEmail(to=to, subject=subject, text=text, html=body, link=link)
