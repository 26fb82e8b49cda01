"""An SMTP server on loopback (aiosmtpd) that keeps what it receives, and readers of the
account emails it got."""

from __future__ import annotations

import asyncio
import email
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

LINK = re.compile(r"http://frontend\.test/(verify-email|reset-password)\?token=([0-9a-f]{64})")
SMTP_PASSWORD = "s3cret"


@dataclass
class SmtpServer:
    """aiosmtpd's handler and authenticator: keeps every message and login attempt; accepts
    any user with SMTP_PASSWORD."""

    port: int
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    data_delay_seconds: float = 0.0
    """How long the server takes to accept a message (it runs in its own thread's loop)."""

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.data_delay_seconds)
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope, message))
        return "250 OK"

    def authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == SMTP_PASSWORD.encode())

    def only_message(self) -> EmailMessage:
        assert len(self.messages) == 1
        return self.messages[0][1]


def parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


def link_in(message: EmailMessage, kind: str) -> str:
    text, html = parts(message)
    match = LINK.search(text)
    assert match is not None, text
    assert match.group(1) == kind
    assert f'href="{match.group(0)}"' in html
    return match.group(2)
