"""Account rules: registration, verification, sign-in with lockout, token families and
passwords, and the authentication of every request.

Every change to a user row is made here, on a row this module loads or updates through the
request's session itself (never on the CurrentUser object, which the user cache hands out
detached), and each one tells the cache to forget the user once the change is committed:
invalidating a cached user has exactly one home.

Every login (or registration) starts a refresh-token family, what users call a session: its
id travels in every access token as the `sid` claim, and each refresh rotates the token
within it. In code it is always a family, never a session: that word is the database's.

Locks are taken in one order everywhere: the user row first, then its refresh tokens. A
refresh locks the user before it rotates, and every revocation (logout, logout-all, password
change and reset, account deletion) locks the user before it reads the clock or touches a
token, so the two never deadlock, and a revocation sees every token a refresh committed
before it and dates itself after them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from pydantic import ConfigDict
from sqlalchemy import case, delete, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth import families, personal_tokens
from taskapi.auth.cache import CACHED_USER_COLUMNS, CachedUser, UserCache
from taskapi.auth.jobs import (
    ACCOUNT_LOCKED_EMAIL,
    PASSWORD_RESET_EMAIL,
    VERIFICATION_EMAIL,
    LinkEmailJob,
)
from taskapi.auth.metrics import record_auth_failure
from taskapi.auth.models import RefreshToken, User
from taskapi.core.config import Settings
from taskapi.core.errors import BadRequest, Conflict, Forbidden, Problem, Unauthorized
from taskapi.core.jobs import enqueue
from taskapi.core.models import UTCDateTime, utcnow
from taskapi.core.security import (
    AccessClaims,
    PasswordHasher,
    create_access_token,
    hash_token,
    link_token,
    new_opaque_token,
)

MAX_FAILED_LOGINS = 5
LOCKOUT_DURATION = timedelta(minutes=15)
VERIFICATION_TOKEN_LIFETIME = timedelta(hours=24)
RESET_TOKEN_LIFETIME = timedelta(hours=1)

log = structlog.get_logger("taskapi.auth")


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"


class AccountLockedProblem(Problem):
    """Sign-in refused until `locked_until`, after too many failures in a row."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://taskapi.dev/problems/account-locked",
                "title": "Forbidden",
                "status": 403,
                "detail": "Too many failed sign-ins. Try again after the time in locked_until.",
                "code": "account_locked",
                "request_id": "5f0c6c8e0d6c4a47b6a8f0d2f6c3e9a1",
                "locked_until": "2026-11-21T08:15:00Z",
            }
        }
    )

    locked_until: datetime


class AccountLocked(Forbidden):
    code = "account_locked"
    problem_model = AccountLockedProblem

    def __init__(self, locked_until: datetime) -> None:
        super().__init__(
            "Too many failed sign-ins. Try again after the time in locked_until.",
            extra={"locked_until": locked_until.isoformat()},
            # The fifth failure raises this after counting itself: that count must stay.
            keep_changes=True,
        )


class EmailTaken(Conflict):
    code = "email_taken"


class InvalidLinkToken(BadRequest):
    """A verification or reset token that is unknown, expired or already used."""

    code = "invalid_token"


class IncorrectPassword(BadRequest):
    code = "incorrect_password"


@dataclass(frozen=True, slots=True)
class LoginTokens:
    """What a login, a registration or a refresh answers: a new access token and the next
    refresh token of the family."""

    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)


@dataclass(frozen=True, slots=True)
class _Link:
    nonce: str
    """What the email job keeps; the token is derived from it when the email is sent."""
    token_hash: str
    """What the user row keeps."""


def _new_link(settings: Settings) -> _Link:
    nonce = new_opaque_token()
    return _Link(nonce=nonce, token_hash=hash_token(link_token(settings.secret_key, nonce)))


def _bad_credentials() -> InvalidCredentials:
    """One body for an unknown email and a wrong password; kept so a failure count stays."""
    record_auth_failure("invalid_credentials")
    return InvalidCredentials("Incorrect email or password.", keep_changes=True)


def _account_locked(locked_until: datetime) -> AccountLocked:
    record_auth_failure("account_locked")
    return AccountLocked(locked_until)


async def authenticate(
    *, session: AsyncSession, cache: UserCache, settings: Settings, claims: AccessClaims
) -> User:
    """The user a verified access token speaks for, unless the account is gone, the token
    was issued before the account's tokens were revoked (logout-all, password change or
    reset), or its family (`sid`) was revoked (logout, reuse of a rotated refresh token,
    a revoked session)."""
    cached = await cached_user(
        session=session, cache=cache, settings=settings, user_id=claims.user_id
    )
    user = cached.user
    if (
        user.tokens_valid_after is not None
        and claims.issued_at < user.tokens_valid_after.timestamp()
    ) or claims.family_id in cached.revoked_families:
        record_auth_failure("revoked_access_token")
        raise Unauthorized("Token has been revoked")
    return user


async def cached_user(
    *, session: AsyncSession, cache: UserCache, settings: Settings, user_id: uuid.UUID
) -> CachedUser:
    """The user and their recently revoked families, cache-aside: the database is read only
    when the cache has no entry. 401 when the account is gone."""
    cached, lookup = await cache.get(user_id)
    if cached is not None:
        return cached
    row = (
        await session.execute(select(*CACHED_USER_COLUMNS).where(User.id == user_id))
    ).one_or_none()
    if row is None:
        record_auth_failure("revoked_access_token")
        raise Unauthorized()
    revoked = await families.revoked_since(
        session=session,
        user_id=user_id,
        access_token_lifetime=timedelta(minutes=settings.access_token_expire_minutes),
    )
    return await cache.fill(lookup, row._mapping, revoked)


async def register(
    *,
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    client: families.Client,
    email: str,
    password: str,
    full_name: str,
) -> LoginTokens:
    password_hash = await hasher.hash(password)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken("An account with this email already exists.")
    link = _new_link(settings)
    user = User(
        email=email,
        password_hash=password_hash,
        full_name=full_name,
        is_active=False,
        email_verification_token_hash=link.token_hash,
        email_verification_expires_at=utcnow() + VERIFICATION_TOKEN_LIFETIME,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as error:
        # A concurrent registration of the same email committed between our check and insert.
        raise EmailTaken("An account with this email already exists.") from error
    tokens = await _start_family(session=session, settings=settings, user=user, client=client)
    await enqueue(session, VERIFICATION_EMAIL, LinkEmailJob(user_id=user.id, nonce=link.nonce))
    return tokens


async def verify_email(*, session: AsyncSession, cache: UserCache, token: str) -> User:
    """One conditional UPDATE, so a token can be used once even by racing requests."""
    user = await session.scalar(
        update(User)
        .where(
            User.email_verification_token_hash == hash_token(token),
            User.email_verification_expires_at > utcnow(),
        )
        .values(
            is_active=True,
            email_verification_token_hash=None,
            email_verification_expires_at=None,
        )
        .returning(User)
        .execution_options(populate_existing=True)
    )
    if user is None:
        record_auth_failure("invalid_email_token")
        raise InvalidLinkToken("The verification link is invalid, expired or already used.")
    cache.invalidate_after_commit(session, user.id)
    return user


async def resend_verification(
    *, session: AsyncSession, cache: UserCache, settings: Settings, email: str
) -> None:
    """Silent for unknown and already verified addresses: the answer must not tell."""
    user = await _user_by_email_for_update(session=session, email=email)
    if user is None or user.is_active:
        return
    link = _new_link(settings)
    user.email_verification_token_hash = link.token_hash
    user.email_verification_expires_at = utcnow() + VERIFICATION_TOKEN_LIFETIME
    await session.flush()
    cache.invalidate_after_commit(session, user.id)
    await enqueue(session, VERIFICATION_EMAIL, LinkEmailJob(user_id=user.id, nonce=link.nonce))


async def login(
    *,
    session: AsyncSession,
    cache: UserCache,
    settings: Settings,
    hasher: PasswordHasher,
    client: families.Client,
    email: str,
    password: str,
) -> LoginTokens:
    """Check the password with nothing locked (argon2 takes tens of milliseconds, and on
    SQLite a lock would stop every writer), then decide on the locked row: the lockout
    counts, and a success, are atomic with respect to concurrent sign-ins."""
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        # Cost what a real check costs, so response time does not tell which emails exist.
        await hasher.verify_dummy(password)
        raise _bad_credentials()
    if user.locked_until is not None and user.locked_until > utcnow():
        raise _account_locked(user.locked_until)
    if not await hasher.verify(password, user.password_hash):
        locked_until = await _count_failed_login(
            session=session, cache=cache, settings=settings, user_id=user.id
        )
        raise _bad_credentials() if locked_until is None else _account_locked(locked_until)
    await _admit(session=session, cache=cache, user_id=user.id, checked_hash=user.password_hash)
    return await _start_family(session=session, settings=settings, user=user, client=client)


async def _admit(
    *, session: AsyncSession, cache: UserCache, user_id: uuid.UUID, checked_hash: str
) -> None:
    """The password matched `checked_hash`; while it was being checked, concurrent failures
    may have locked the account, or a reset may have changed the password. Decide again on
    the row, locked, and only then clear the failure count."""
    current = (
        await session.execute(
            select(User.password_hash, User.failed_login_attempts, User.locked_until)
            .where(User.id == user_id)
            # FOR NO KEY UPDATE on PostgreSQL: rows that reference the user stay insertable.
            .with_for_update(key_share=True)
        )
    ).one_or_none()
    if current is None or current.password_hash != checked_hash:
        raise _bad_credentials()
    if current.locked_until is not None and current.locked_until > utcnow():
        raise _account_locked(current.locked_until)
    if current.failed_login_attempts or current.locked_until is not None:
        await _clear_failed_logins(session=session, cache=cache, user_id=user_id)


async def _count_failed_login(
    *, session: AsyncSession, cache: UserCache, settings: Settings, user_id: uuid.UUID
) -> datetime | None:
    """Count in SQL so concurrent failures all count; the fifth locks, and the failure that
    locks queues the owner's email with a fresh reset link (the previous one dies). The end
    of the lock once the account is locked (by this failure or a concurrent one), else
    None. The caller's refusal must keep the change (`keep_changes`)."""
    now = utcnow()
    # An expired lock means counting starts over.
    attempts = case((User.locked_until.is_not(None), 1), else_=User.failed_login_attempts + 1)
    lock = literal(now + LOCKOUT_DURATION, UTCDateTime())
    counted = (
        await session.execute(
            update(User)
            .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
            .values(
                failed_login_attempts=attempts,
                locked_until=case((attempts >= MAX_FAILED_LOGINS, lock), else_=None),
            )
            .returning(User.locked_until)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if counted is None:
        # A concurrent failure has just locked the account.
        locked_until = await session.scalar(select(User.locked_until).where(User.id == user_id))
        return locked_until or now + LOCKOUT_DURATION
    cache.invalidate_after_commit(session, user_id)
    locked: datetime | None = counted.locked_until
    if locked is not None:
        link = _new_link(settings)
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(
                password_reset_token_hash=link.token_hash,
                password_reset_expires_at=utcnow() + RESET_TOKEN_LIFETIME,
            )
            .execution_options(synchronize_session=False)
        )
        await enqueue(
            session, ACCOUNT_LOCKED_EMAIL, LinkEmailJob(user_id=user_id, nonce=link.nonce)
        )
    return locked


async def _clear_failed_logins(
    *, session: AsyncSession, cache: UserCache, user_id: uuid.UUID
) -> None:
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(failed_login_attempts=0, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    cache.invalidate_after_commit(session, user_id)


async def refresh(
    *, session: AsyncSession, cache: UserCache, settings: Settings, refresh_token: str
) -> LoginTokens:
    """Rotate: the presented token dies in the same statement that proves it was alive, so
    of two concurrent refreshes with one token exactly one wins. The owner's row is locked
    first (see the module's lock order), so a revocation is wholly before or after; the
    family must still be live, checked after the rotation (auth/families.py)."""
    token_hash = hash_token(refresh_token)
    owner_id = await session.scalar(
        select(RefreshToken.user_id).where(RefreshToken.token_hash == token_hash)
    )
    user = None if owner_id is None else await _lock_user(session=session, user_id=owner_id)
    if user is None:
        record_auth_failure("invalid_refresh_token")
        raise InvalidRefreshToken("The refresh token is invalid, expired or revoked.")
    now = utcnow()
    rotated = (
        await session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(revoked_at=now)
            .returning(RefreshToken.family_id, RefreshToken.created_at)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if rotated is None:
        reused = await _revoke_family_if_reused(session=session, cache=cache, token_hash=token_hash)
        record_auth_failure("refresh_token_reuse" if reused else "invalid_refresh_token")
        raise InvalidRefreshToken(
            "The refresh token is invalid, expired or revoked.", keep_changes=reused
        )
    if user.tokens_valid_after is not None and user.tokens_valid_after > rotated.created_at:
        record_auth_failure("invalid_refresh_token")
        raise InvalidRefreshToken("The refresh token is invalid, expired or revoked.")
    if not await families.extend(
        session=session,
        family_id=rotated.family_id,
        now=now,
        expires_at=_refresh_token_expiry(settings, now),
    ):
        record_auth_failure("invalid_refresh_token")
        raise InvalidRefreshToken("The refresh token is invalid, expired or revoked.")
    return await _issue_tokens(
        session=session, settings=settings, user=user, family_id=rotated.family_id, now=now
    )


async def _revoke_family_if_reused(
    *, session: AsyncSession, cache: UserCache, token_hash: str
) -> bool:
    """A rotated token presented again means it leaked (or a client raced itself): end the
    whole family, the live successor included (RFC 9700 §4.14.2)."""
    known = (
        await session.execute(
            select(RefreshToken.user_id, RefreshToken.family_id).where(
                RefreshToken.token_hash == token_hash, RefreshToken.revoked_at.is_not(None)
            )
        )
    ).one_or_none()
    if known is None:
        return False
    await families.revoke(
        session=session, cache=cache, user_id=known.user_id, family_id=known.family_id
    )
    log.warning("refresh_token_reuse", user_id=str(known.user_id), family_id=str(known.family_id))
    return True


async def logout(
    *, session: AsyncSession, cache: UserCache, user_id: uuid.UUID, refresh_token: str
) -> None:
    """End the family the refresh token belongs to, its access tokens included, if it is
    the caller's; silent otherwise. The user row first: a refresh of the family committing
    meanwhile is then ended too."""
    if await _lock_user(session=session, user_id=user_id) is None:
        raise Unauthorized()
    family_id = await session.scalar(
        select(RefreshToken.family_id).where(
            RefreshToken.token_hash == hash_token(refresh_token), RefreshToken.user_id == user_id
        )
    )
    if family_id is not None:
        await families.revoke(session=session, cache=cache, user_id=user_id, family_id=family_id)


async def logout_all(*, session: AsyncSession, cache: UserCache, user_id: uuid.UUID) -> None:
    """The clock is read once the user row is locked: every refresh that committed before
    is then revoked, and every access token it issued is older than `tokens_valid_after`."""
    if await _lock_user(session=session, user_id=user_id) is None:
        raise Unauthorized()
    now = utcnow()
    await families.revoke_all(session=session, cache=cache, user_id=user_id, now=now)
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(tokens_valid_after=now)
        .execution_options(synchronize_session=False)
    )
    cache.invalidate_after_commit(session, user_id)


async def forgot_password(
    *, session: AsyncSession, cache: UserCache, settings: Settings, email: str
) -> None:
    """Silent for unknown addresses: the answer must not tell which accounts exist."""
    user = await _user_by_email_for_update(session=session, email=email)
    if user is None:
        return
    link = _new_link(settings)
    user.password_reset_token_hash = link.token_hash
    user.password_reset_expires_at = utcnow() + RESET_TOKEN_LIFETIME
    await session.flush()
    cache.invalidate_after_commit(session, user.id)
    await enqueue(session, PASSWORD_RESET_EMAIL, LinkEmailJob(user_id=user.id, nonce=link.nonce))


async def reset_password(
    *,
    session: AsyncSession,
    cache: UserCache,
    hasher: PasswordHasher,
    token: str,
    new_password: str,
) -> None:
    """Set the password, end every family and personal access token and lift a lockout:
    whoever holds the link owns the mailbox, and whoever held the old password must be out."""
    token_hash = hash_token(token)
    user_id = await session.scalar(
        select(User.id).where(
            User.password_reset_token_hash == token_hash,
            User.password_reset_expires_at > utcnow(),
        )
    )
    if user_id is None:
        raise _invalid_reset_link()
    password_hash = await hasher.hash(new_password)
    # Locked before the clock is read (the module's lock order); FOR UPDATE, the lock the
    # UPDATE of a unique column below takes anyway, so it is never upgraded while held.
    await _lock_user(session=session, user_id=user_id, for_key_update=True)
    now = utcnow()
    # Conditional on the token still being there: a racing reset with it has already won.
    changed = await session.scalar(
        update(User)
        .where(User.id == user_id, User.password_reset_token_hash == token_hash)
        .values(
            password_hash=password_hash,
            password_reset_token_hash=None,
            password_reset_expires_at=None,
            failed_login_attempts=0,
            locked_until=None,
            tokens_valid_after=now,
        )
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if changed is None:
        raise _invalid_reset_link()
    await families.revoke_all(session=session, cache=cache, user_id=user_id, now=now)
    await personal_tokens.revoke_all(session=session, user_id=user_id)


def _invalid_reset_link() -> InvalidLinkToken:
    record_auth_failure("invalid_email_token")
    return InvalidLinkToken("The reset link is invalid, expired or already used.")


async def update_profile(
    *, session: AsyncSession, cache: UserCache, user_id: uuid.UUID, full_name: str | None
) -> User:
    user = await _user_for_update(session=session, user_id=user_id)
    if full_name is not None:
        user.full_name = full_name
    await session.flush()
    cache.invalidate_after_commit(session, user_id)
    return user


async def change_password(
    *,
    session: AsyncSession,
    cache: UserCache,
    settings: Settings,
    hasher: PasswordHasher,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    current_password: str,
    new_password: str,
) -> None:
    """Every other family ends; the caller's refresh token stays valid, while its access
    token (issued before the change) must be refreshed like all others.

    A wrong current password counts as a failed sign-in and a locked account cannot change
    its password, so a stolen access token is no faster a way to guess the password than
    the sign-in. Both argon2 steps run with nothing locked; the change is decided on the
    locked row, conditional on the password still being the one checked, so a concurrent
    change, reset or lock is never overwritten."""
    current = (
        await session.execute(
            select(User.password_hash, User.locked_until).where(User.id == user_id)
        )
    ).one_or_none()
    if current is None:
        raise Unauthorized()
    if current.locked_until is not None and current.locked_until > utcnow():
        raise _account_locked(current.locked_until)
    if not await hasher.verify(current_password, current.password_hash):
        locked_until = await _count_failed_login(
            session=session, cache=cache, settings=settings, user_id=user_id
        )
        raise _incorrect_password() if locked_until is None else _account_locked(locked_until)
    new_hash = await hasher.hash(new_password)
    user = await _lock_user(session=session, user_id=user_id)
    if user is None:
        raise Unauthorized()
    if user.password_hash != current.password_hash:
        # Changed meanwhile: the password given is no longer the current one.
        raise _incorrect_password()
    now = utcnow()
    if user.locked_until is not None and user.locked_until > now:
        raise _account_locked(user.locked_until)
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            password_hash=new_hash,
            tokens_valid_after=now,
            failed_login_attempts=0,
            locked_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    await families.revoke_all(
        session=session, cache=cache, user_id=user_id, now=now, keep=family_id
    )
    # A refresh token created before tokens_valid_after is refused; re-date the caller's
    # live one so its family alone outlives the change.
    await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.user_id == user_id,
            RefreshToken.family_id == family_id,
            RefreshToken.revoked_at.is_(None),
        )
        .values(created_at=now)
        .execution_options(synchronize_session=False)
    )
    cache.invalidate_after_commit(session, user_id)


def _incorrect_password() -> IncorrectPassword:
    record_auth_failure("invalid_credentials")
    return IncorrectPassword(
        "The current password is not correct.",
        keep_changes=True,
        extra={
            "errors": [
                {"field": "current_password", "message": "The current password is not correct"}
            ]
        },
    )


async def delete_account(*, session: AsyncSession, cache: UserCache, user_id: uuid.UUID) -> None:
    """Tasks, categories, their links, sessions and personal access tokens go with the row
    (ON DELETE CASCADE). The DELETE locks the user row before the cascade reaches any token
    (the lock order)."""
    await session.execute(delete(User).where(User.id == user_id))
    cache.invalidate_after_commit(session, user_id)


async def _lock_user(
    *, session: AsyncSession, user_id: uuid.UUID, for_key_update: bool = False
) -> User | None:
    """The user row, locked and read afresh; the first lock of every token change.

    FOR NO KEY UPDATE on PostgreSQL unless `for_key_update`: tasks and tokens referring to
    the user stay insertable meanwhile. On SQLite, BEGIN IMMEDIATE (core/db.py)."""
    return await session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update(key_share=not for_key_update)
        .execution_options(populate_existing=True)
    )


async def _user_for_update(*, session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None:
        raise Unauthorized()
    return user


async def _user_by_email_for_update(*, session: AsyncSession, email: str) -> User | None:
    return await session.scalar(
        select(User)
        .where(User.email == email)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _start_family(
    *, session: AsyncSession, settings: Settings, user: User, client: families.Client
) -> LoginTokens:
    now = utcnow()
    family_id = await families.start(
        session=session,
        user_id=user.id,
        client=client,
        now=now,
        expires_at=_refresh_token_expiry(settings, now),
    )
    return await _issue_tokens(
        session=session, settings=settings, user=user, family_id=family_id, now=now
    )


def _refresh_token_expiry(settings: Settings, now: datetime) -> datetime:
    return now + timedelta(days=settings.refresh_token_expire_days)


async def _issue_tokens(
    *,
    session: AsyncSession,
    settings: Settings,
    user: User,
    family_id: uuid.UUID,
    now: datetime,
) -> LoginTokens:
    refresh_token = new_opaque_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=hash_token(refresh_token),
            expires_at=_refresh_token_expiry(settings, now),
            created_at=now,
        )
    )
    await session.flush()
    access_token = create_access_token(
        settings=settings, user_id=user.id, email=user.email, family_id=family_id
    )
    return LoginTokens(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=settings.access_token_expire_minutes * 60,
        user=user,
    )
