"""What the account emails say: email verification, password reset, and the lockout notice
(which carries a reset link), each with its link.

Sending them is a job (auth/jobs.py); the backends are core/email.py's.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from taskapi.core.config import Settings
from taskapi.core.email import OutgoingEmail


def verification_email(
    *, settings: Settings, to: str, full_name: str, token: str, message_id: str | None = None
) -> OutgoingEmail:
    link = f"{settings.frontend_url}/verify-email?token={token}"
    return _with_link(
        message_id=message_id,
        to=to,
        full_name=full_name,
        subject="Confirm your email address",
        lead="Please confirm your email address to start using your account.",
        action="Confirm email address",
        expiry="The link works once and expires in 24 hours.",
        link=link,
    )


def password_reset_email(
    *, settings: Settings, to: str, full_name: str, token: str, message_id: str | None = None
) -> OutgoingEmail:
    link = f"{settings.frontend_url}/reset-password?token={token}"
    return _with_link(
        message_id=message_id,
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


def account_locked_email(
    *,
    settings: Settings,
    to: str,
    full_name: str,
    token: str,
    locked_until: datetime,
    message_id: str | None = None,
) -> OutgoingEmail:
    """Sent when failed sign-ins lock the account: whoever made them, the owner can get in
    again at once with the reset link instead of waiting for the lock to end."""
    link = f"{settings.frontend_url}/reset-password?token={token}"
    until = locked_until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _with_link(
        message_id=message_id,
        to=to,
        full_name=full_name,
        subject="Your account is locked",
        lead=f"Your account was locked after five failed sign-ins in a row; it unlocks by "
        f"itself at {until}. If that was not you, someone may be guessing your password. "
        "Either way you can choose a new password now, which unlocks the account at once.",
        action="Choose a new password",
        expiry="The link works once and expires in 1 hour. If the failed sign-ins were "
        "yours, you may ignore this email and sign in once the lock ends.",
        link=link,
    )


def _with_link(
    *,
    to: str,
    full_name: str,
    subject: str,
    lead: str,
    action: str,
    expiry: str,
    link: str,
    message_id: str | None,
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
    return OutgoingEmail(
        to=to, subject=subject, text=text, html=body, link=link, message_id=message_id
    )
