"""Account jobs: the verification, password reset and lockout emails, and forgetting
expired tokens.

The service queues them in the transaction that stores the link's token hash, so an email
is sent only for a committed change and is never lost after it. A job carries the user's
id and the nonce its token derives from (core/security.link_token), never the token. When
it runs, the email goes out only if that token is still the account's live one: a newer
link, a used one or an expired one makes the job a no-op.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

import structlog
from pydantic import BaseModel
from sqlalchemy import delete, or_, select, update

from taskapi.auth.emails import account_locked_email, password_reset_email, verification_email
from taskapi.auth.families import REVOCATION_CLOCK_SKEW
from taskapi.auth.models import (
    IdempotencyRecord,
    PersonalAccessToken,
    RefreshToken,
    RefreshTokenFamily,
    User,
)
from taskapi.core.config import Settings
from taskapi.core.email import OutgoingEmail, message_id
from taskapi.core.jobs import JobContext, JobKind, NoPayload, RetryPolicy
from taskapi.core.security import hash_token, link_token

log = structlog.get_logger("taskapi.auth.jobs")


class LinkEmailJob(BaseModel):
    user_id: uuid.UUID
    nonce: str


def live_link_token(
    *,
    settings: Settings,
    nonce: str,
    token_hash: str | None,
    expires_at: datetime | None,
    now: datetime,
) -> str | None:
    """The token derived from `nonce`, if its hash is the stored one and has not expired.
    Derived with the previous secret too, for a job queued before a key rotation."""
    if token_hash is None or expires_at is None or expires_at <= now:
        return None
    for secret in (settings.secret_key, settings.jwt_secret_key_prev):
        if secret is None:
            continue
        token = link_token(secret, nonce)
        if hmac.compare_digest(hash_token(token), token_hash):
            return token
    return None


class _LinkEmailBuilder(Protocol):
    """What auth/emails.py's builders have in common, so one helper sends all three; the
    lockout email gets the end of its lock bound beforehand."""

    def __call__(
        self, *, settings: Settings, to: str, full_name: str, token: str, message_id: str | None
    ) -> OutgoingEmail: ...


async def _send_link_email(
    context: JobContext,
    job: LinkEmailJob,
    *,
    user: User,
    kind: str,
    token_hash: str | None,
    expires_at: datetime | None,
    email: _LinkEmailBuilder,
) -> None:
    """The rule the three link emails share: the email goes out only while the link the job
    was queued for is the account's live one (`token_hash`, `expires_at`), so a job whose
    link was since replaced, used or expired does nothing but say so in the log."""
    token = live_link_token(
        settings=context.settings,
        nonce=job.nonce,
        token_hash=token_hash,
        expires_at=expires_at,
        now=context.now,
    )
    if token is None:
        log.info("link_email_skipped", kind=kind, reason="link no longer live")
        return
    await context.email.send(
        email(
            settings=context.settings,
            to=user.email,
            full_name=user.full_name,
            token=token,
            message_id=message_id(context.job_id, context.settings.smtp_from),
        )
    )


async def send_verification_email(context: JobContext, job: LinkEmailJob) -> None:
    user = await context.session.get(User, job.user_id)
    if user is None or user.is_active:
        return
    await _send_link_email(
        context,
        job,
        user=user,
        kind=VERIFICATION_EMAIL.name,
        token_hash=user.email_verification_token_hash,
        expires_at=user.email_verification_expires_at,
        email=verification_email,
    )


async def send_password_reset_email(context: JobContext, job: LinkEmailJob) -> None:
    user = await context.session.get(User, job.user_id)
    if user is None:
        return
    await _send_link_email(
        context,
        job,
        user=user,
        kind=PASSWORD_RESET_EMAIL.name,
        token_hash=user.password_reset_token_hash,
        expires_at=user.password_reset_expires_at,
        email=password_reset_email,
    )


async def send_account_locked_email(context: JobContext, job: LinkEmailJob) -> None:
    """The reset link of a lock, unless the lock or the link is over by now (the owner
    reset the password, or asked for a newer link)."""
    user = await context.session.get(User, job.user_id)
    if user is None or user.locked_until is None or user.locked_until <= context.now:
        return
    await _send_link_email(
        context,
        job,
        user=user,
        kind=ACCOUNT_LOCKED_EMAIL.name,
        token_hash=user.password_reset_token_hash,
        expires_at=user.password_reset_expires_at,
        email=partial(account_locked_email, locked_until=user.locked_until),
    )


VERIFICATION_EMAIL = JobKind(
    name="auth.verification_email",
    payload=LinkEmailJob,
    handler=send_verification_email,
    # The link works for 24 hours: retrying past that would send a dead link.
    retry=RetryPolicy(
        delays=(
            timedelta(seconds=10),
            timedelta(minutes=1),
            timedelta(minutes=5),
            timedelta(minutes=30),
            timedelta(hours=2),
            timedelta(hours=6),
        ),
        max_age=timedelta(hours=24),
    ),
)
PASSWORD_RESET_EMAIL = JobKind(
    name="auth.password_reset_email",
    payload=LinkEmailJob,
    handler=send_password_reset_email,
    # The link works for an hour.
    retry=RetryPolicy(
        delays=(
            timedelta(seconds=10),
            timedelta(minutes=1),
            timedelta(minutes=5),
            timedelta(minutes=15),
        ),
        max_age=timedelta(hours=1),
    ),
)

ACCOUNT_LOCKED_EMAIL = JobKind(
    name="auth.account_locked_email",
    payload=LinkEmailJob,
    handler=send_account_locked_email,
    # The reset link works for an hour, the lock lasts 15 minutes.
    retry=PASSWORD_RESET_EMAIL.retry,
)


async def delete_expired_tokens(context: JobContext, _payload: NoPayload) -> None:
    """Forget what can no longer be used: expired verification and reset links, the
    refresh tokens of sessions that have ended (no live token left in the family), expired
    sessions, expired personal access tokens and Idempotency-Key answers past their 24
    hours. A rotated token of a live session stays, so that presenting it again still
    revokes the session (reuse detection); so does a revoked session while an access token
    issued in it may still be alive, so that its `sid` stays refused."""
    session, now = context.session, context.now
    live_families = select(RefreshToken.family_id).where(
        RefreshToken.expires_at > now, RefreshToken.revoked_at.is_(None)
    )
    await session.execute(
        delete(RefreshToken).where(
            RefreshToken.expires_at <= now, RefreshToken.family_id.not_in(live_families)
        )
    )
    await session.execute(
        update(User)
        .where(User.email_verification_expires_at <= now)
        .values(email_verification_token_hash=None, email_verification_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(User)
        .where(User.password_reset_expires_at <= now)
        .values(password_reset_token_hash=None, password_reset_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    access_tokens_alive_since = (
        now
        - timedelta(minutes=context.settings.access_token_expire_minutes)
        - REVOCATION_CLOCK_SKEW
    )
    await session.execute(
        delete(RefreshTokenFamily).where(
            RefreshTokenFamily.expires_at <= now,
            or_(
                RefreshTokenFamily.revoked_at.is_(None),
                RefreshTokenFamily.revoked_at <= access_tokens_alive_since,
            ),
        )
    )
    await session.execute(delete(PersonalAccessToken).where(PersonalAccessToken.expires_at <= now))
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))


DELETE_EXPIRED_TOKENS = JobKind(
    name="auth.delete_expired_tokens",
    payload=NoPayload,
    handler=delete_expired_tokens,
    every=timedelta(hours=1),
)

JOB_KINDS = (VERIFICATION_EMAIL, PASSWORD_RESET_EMAIL, ACCOUNT_LOCKED_EMAIL, DELETE_EXPIRED_TOKENS)
