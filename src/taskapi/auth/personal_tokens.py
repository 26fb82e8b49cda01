"""Personal access tokens (`/auth/tokens`): made by a signed-in user for scripts and
integrations, sent as `Authorization: Bearer tapi_…`, limited to their scopes.

Only the SHA-256 of a token is stored (it carries 256 random bits, so a fast unsalted hash
is the right one) and the value is shown once, at creation. The `tapi_` prefix lets secret
scanners recognise a leaked one. Authentication looks the hash up on every request, so a
deleted token, or every token after a password reset, is refused at once everywhere.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from pydantic import ConfigDict, Field
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskapi.auth.metrics import record_auth_failure
from taskapi.auth.models import PersonalAccessToken, Scope, User
from taskapi.core.errors import BadRequest, Forbidden, NotFound, Problem, Unauthorized
from taskapi.core.models import utcnow
from taskapi.core.security import hash_token

TOKEN_PREFIX = "tapi_"  # noqa: S105 (the public prefix, not a secret)
TOKEN_RANDOM_BYTES = 32
"""43 url-safe characters after the prefix."""
MAX_TOKENS_PER_USER = 50
LAST_USE_PRECISION = timedelta(minutes=1)

log = structlog.get_logger("taskapi.auth")


SCOPE_DESCRIPTIONS = {
    Scope.TASKS_READ: "List and read your tasks",
    Scope.TASKS_WRITE: "Create, change, delete and restore tasks; assign categories to them",
    Scope.CATEGORIES_READ: "List and read your categories",
    Scope.CATEGORIES_WRITE: "Create, change and delete categories",
    Scope.WEBHOOKS_MANAGE: "Create, change, test and delete webhooks",
}


class InsufficientScopeProblem(Problem):
    """A personal access token used outside its scopes, or on an account route."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://taskapi.dev/problems/insufficient-scope",
                "title": "Forbidden",
                "status": 403,
                "detail": "This token lacks the tasks:write scope.",
                "code": "insufficient_scope",
                "request_id": "5f0c6c8e0d6c4a47b6a8f0d2f6c3e9a1",
                "required_scope": "tasks:write",
            }
        }
    )

    required_scope: Scope | None = Field(
        description="The scope the route needs; null on the account routes, which no "
        "personal access token may use."
    )


class InsufficientScope(Forbidden):
    """RFC 6750's `insufficient_scope`, with the scope the route needs; None on the account
    routes, which no personal access token may use whatever its scopes."""

    code = "insufficient_scope"
    problem_model = InsufficientScopeProblem

    def __init__(self, required: Scope | None) -> None:
        if required is None:
            detail = "Personal access tokens cannot be used here; sign in with your password."
            challenge = 'Bearer error="insufficient_scope"'
        else:
            detail = f"This token lacks the {required} scope."
            challenge = f'Bearer error="insufficient_scope", scope="{required}"'
        super().__init__(
            detail,
            extra={"required_scope": None if required is None else str(required)},
            headers={"WWW-Authenticate": challenge},
        )


class TooManyTokens(BadRequest):
    code = "too_many_tokens"

    def __init__(self) -> None:
        super().__init__(
            f"You have {MAX_TOKENS_PER_USER} tokens already; delete one you no longer need."
        )


class TokenNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Token not found.")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a personal access token allows, as authentication found it."""

    token_id: uuid.UUID
    user_id: uuid.UUID
    scopes: frozenset[str]
    last_used_at: datetime | None

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes

    def use_is_worth_recording(self, now: datetime) -> bool:
        return self.last_used_at is None or now - self.last_used_at >= LAST_USE_PRECISION


@dataclass(frozen=True, slots=True)
class CreatedToken:
    """The stored token and, this once, its value."""

    row: PersonalAccessToken
    token: str


def is_personal_token(bearer: str) -> bool:
    return bearer.startswith(TOKEN_PREFIX)


async def create(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    name: str,
    scopes: Sequence[Scope],
    expires_in_days: int | None,
) -> CreatedToken:
    """At most MAX_TOKENS_PER_USER unexpired tokens: the user row is locked while counting,
    so two concurrent creations cannot both take the last place. Expired ones are dropped."""
    now = utcnow()
    await session.scalar(select(User.id).where(User.id == user_id).with_for_update())
    await session.execute(
        delete(PersonalAccessToken).where(
            PersonalAccessToken.user_id == user_id, PersonalAccessToken.expires_at <= now
        )
    )
    count = await session.scalar(
        select(func.count())
        .select_from(PersonalAccessToken)
        .where(PersonalAccessToken.user_id == user_id)
    )
    if count is not None and count >= MAX_TOKENS_PER_USER:
        raise TooManyTokens
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
    row = PersonalAccessToken(
        user_id=user_id,
        name=name,
        token_hash=hash_token(token),
        scopes=sorted({str(scope) for scope in scopes}),
        created_at=now,
        expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
    )
    session.add(row)
    await session.flush()
    return CreatedToken(row=row, token=token)


async def list_live(*, session: AsyncSession, user_id: uuid.UUID) -> Sequence[PersonalAccessToken]:
    """The user's unexpired tokens, newest first."""
    return (
        await session.scalars(
            select(PersonalAccessToken)
            .where(PersonalAccessToken.user_id == user_id, _unexpired(utcnow()))
            .order_by(PersonalAccessToken.created_at.desc(), PersonalAccessToken.id.desc())
        )
    ).all()


async def delete_token(*, session: AsyncSession, user_id: uuid.UUID, token_id: uuid.UUID) -> None:
    deleted = await session.scalar(
        delete(PersonalAccessToken)
        .where(PersonalAccessToken.id == token_id, PersonalAccessToken.user_id == user_id)
        .returning(PersonalAccessToken.id)
    )
    if deleted is None:
        raise TokenNotFound


async def revoke_all(*, session: AsyncSession, user_id: uuid.UUID) -> None:
    """A password reset: whoever had the account may have made tokens."""
    await session.execute(delete(PersonalAccessToken).where(PersonalAccessToken.user_id == user_id))


async def authenticate(*, session: AsyncSession, token: str) -> Grant:
    """What an unexpired token allows, and whose it is; 401 otherwise."""
    now = utcnow()
    row = (
        await session.execute(
            select(
                PersonalAccessToken.id,
                PersonalAccessToken.user_id,
                PersonalAccessToken.scopes,
                PersonalAccessToken.last_used_at,
            ).where(PersonalAccessToken.token_hash == hash_token(token), _unexpired(now))
        )
    ).one_or_none()
    if row is None:
        record_auth_failure("invalid_personal_token")
        raise Unauthorized()
    return Grant(
        token_id=row.id,
        user_id=row.user_id,
        scopes=frozenset(row.scopes),
        last_used_at=row.last_used_at,
    )


async def record_use(sessionmaker: async_sessionmaker[AsyncSession], token_id: uuid.UUID) -> None:
    """Set `last_used_at`, unless another request (on any instance) did within the minute.
    Runs after the response, in a transaction of its own; a failure only loses the mark."""
    now = utcnow()
    try:
        async with sessionmaker() as session:
            await session.execute(
                update(PersonalAccessToken)
                .where(
                    PersonalAccessToken.id == token_id,
                    or_(
                        PersonalAccessToken.last_used_at.is_(None),
                        PersonalAccessToken.last_used_at <= now - LAST_USE_PRECISION,
                    ),
                )
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
    except (SQLAlchemyError, OSError) as error:
        log.warning("personal_token_use_not_recorded", error=type(error).__name__)


def _unexpired(now: datetime) -> ColumnElement[bool]:
    return or_(PersonalAccessToken.expires_at.is_(None), PersonalAccessToken.expires_at > now)
