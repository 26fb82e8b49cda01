"""`Idempotency-Key` on POSTs that create or change something (IETF draft "The
Idempotency-Key HTTP Header Field"): a client that retries after a lost answer gets the
first answer again instead of a second task.

A route opts in with two declarations: its router's `route_class=IdempotentRoute`, and the
parameter `_: Annotated[None, idempotent(Scope.X)]` with the scope the route needs. Then:

- without the header nothing changes;
- the first request with a key runs as usual, and its answer (2xx or 4xx: status, body and
  the headers that describe it) is stored in the request's own transaction, so it commits
  together with whatever the request wrote, or not at all;
- for 24 hours a repeat by the same caller (the user of a password sign-in, or the personal
  access token) with the same key and the same method, path, query and body gets that
  answer again, byte for byte, with `Idempotent-Replayed: true`, and writes nothing;
  with another method, path, query or body it gets 422 `idempotency_key_reused`;
- while the first is still running, a repeat gets 409 `idempotency_key_in_progress`;
- a 5xx is not stored: the transaction rolls back and the key is free again.

"While the first is still running" is a lock held by its transaction, so it is seen on
every instance and ends with the transaction, crash included: on PostgreSQL a transaction
advisory lock on the hash of (caller, key), tried without waiting; on SQLite the database's
write lock, which serialises every writing transaction anyway (a repeat waits for the first
and is then answered from the stored record). The unique (caller, key) constraint backs
both. The work runs inside a SAVEPOINT, so a 4xx stores its answer without what the
failing request may have written before it failed.

Expired records are deleted by the hourly `auth.delete_expired_tokens` job (auth/jobs.py),
and lazily meanwhile: the expired record of a key when the key is used again, and a
caller's expired records whenever that caller stores a new one.
"""

from __future__ import annotations

import hashlib
import inspect
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import Header, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction
from starlette.exceptions import HTTPException

from taskapi.auth.dependencies import authenticated_caller, get_scoped_user
from taskapi.auth.models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyRecord, Scope, User
from taskapi.core.db import SessionDep
from taskapi.core.errors import AppError, Conflict
from taskapi.core.models import utcnow

RETENTION = timedelta(hours=24)
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
"""Printable ASCII, what the contract allows in a key; a header value has no spaces at its
ends (RFC 9110 §5.5), so neither has a key."""
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("content-type", "location", "etag")
"""What describes a stored answer, besides its status and body."""
_ATTEMPT = "taskapi.idempotency"
REPLAYED_HEADER_DOC: dict[str, Any] = {
    REPLAYED_HEADER: {
        "description": "`true` when this is the stored first answer to an earlier request "
        "with the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

log = structlog.get_logger("taskapi.idempotency")


class IdempotencyKeyReused(AppError):
    status = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was used for another request (method, path or body); "
            "use a new key for a new request."
        )


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )


IDEMPOTENCY_ERRORS = (IdempotencyKeyInProgress, IdempotencyKeyReused)
"""What a route that takes an Idempotency-Key may answer besides its own errors."""


class _Replay(Exception):
    """Raised by the dependency, answered by the route: the stored first answer."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__(record.key)
        self.record = record


@dataclass
class _Attempt:
    """A first request with a key, running inside `savepoint`."""

    session: AsyncSession
    savepoint: AsyncSessionTransaction
    user_id: uuid.UUID
    caller_id: uuid.UUID
    key: str
    fingerprint: str

    async def keep(self, response: Response, *, discard_writes: bool) -> None:
        """Store the answer in the request's transaction, with or without what the request
        wrote before it (a 4xx drops those)."""
        if discard_writes:
            await self.savepoint.rollback()
        else:
            await self.savepoint.commit()
        now = utcnow()
        await self.session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.caller_id == self.caller_id, IdempotencyRecord.expires_at <= now
            )
        )
        self.session.add(
            IdempotencyRecord(
                user_id=self.user_id,
                caller_id=self.caller_id,
                key=self.key,
                fingerprint=self.fingerprint,
                status_code=response.status_code,
                headers={
                    name: response.headers[name]
                    for name in KEPT_HEADERS
                    if name in response.headers
                },
                body=bytes(response.body),
                created_at=now,
                expires_at=now + RETENTION,
            )
        )
        await self.session.flush()


async def _use_key(
    request: Request,
    session: SessionDep,
    _allowed: Annotated[User, Security(get_scoped_user)],
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
            pattern=KEY_PATTERN,
            description="Any 1 to 255 printable ASCII characters, new for each new request "
            "(a UUID is a good choice). Repeats of the request with it within 24 hours get "
            f"the first answer again, with `{REPLAYED_HEADER}: true`.",
        ),
    ] = None,
) -> None:
    """Runs after authentication and the scope check (`_allowed`, the route's own, cached),
    so a refused request never touches a key."""
    if key is None:
        return
    caller = authenticated_caller(request)
    if not isinstance(request.scope.get("route"), IdempotentRoute):
        raise RuntimeError("a route that takes an Idempotency-Key must be an IdempotentRoute")
    caller_id = caller.grant.token_id if caller.grant is not None else caller.user.id
    await _lock(session, f"{caller_id}:{key}")
    now = utcnow()
    record = await session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.caller_id == caller_id, IdempotencyRecord.key == key)
        # On SQLite this takes the write lock (core/db.py); on PostgreSQL the advisory lock
        # above already serialises the key.
        .with_for_update()
    )
    fingerprint = await _fingerprint(request)
    if record is not None and record.expires_at > now:
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused
        raise _Replay(record)
    if record is not None:
        await session.delete(record)
        await session.flush()
    request.scope[_ATTEMPT] = _Attempt(
        session=session,
        savepoint=await session.begin_nested(),
        user_id=caller.user.id,
        caller_id=caller_id,
        key=key,
        fingerprint=fingerprint,
    )


def idempotent(scope: Scope) -> Any:
    """The parameter a route declares to take an `Idempotency-Key`: with the scope the
    route's caller dependency declares, so both share one authentication."""
    return Security(_use_key, scopes=[scope])


async def _lock(session: AsyncSession, name: str) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return
    lock_id = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    if not await session.scalar(select(func.pg_try_advisory_xact_lock(lock_id))):
        raise IdempotencyKeyInProgress


async def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, request.url.query):
        digest.update(part.encode())
        digest.update(b"\n")
    digest.update(await request.body())
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    return Response(
        content=record.body,
        status_code=record.status_code,
        headers={**record.headers, REPLAYED_HEADER: "true"},
    )


class IdempotentRoute(APIRoute):
    """Keeps the first answer of a request that came with an Idempotency-Key (see the
    module). Inside the route's handler, so before the request's transaction commits."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_idempotently(request: Request) -> Response:
            try:
                response = await handle(request)
            except _Replay as replay:
                return _replay(replay.record)
            except (AppError, RequestValidationError, HTTPException) as error:
                attempt: _Attempt | None = request.scope.get(_ATTEMPT)
                if attempt is None:
                    raise
                answer = await _answer_to(request, error)
                if answer.status_code >= 500:
                    raise
                keep_changes = isinstance(error, AppError) and error.keep_changes
                await attempt.keep(answer, discard_writes=not keep_changes)
                return answer
            attempt = request.scope.get(_ATTEMPT)
            if attempt is not None:
                await attempt.keep(response, discard_writes=False)
            return response

        return handle_idempotently


async def _answer_to(request: Request, error: Exception) -> Response:
    """The answer the app's own exception handler (core/errors.py) gives to `error`."""
    handlers: dict[Any, Callable[[Request, Exception], Any]] = request.app.exception_handlers
    handler = next(handlers[cls] for cls in type(error).__mro__ if cls in handlers)
    answer = handler(request, error)
    if inspect.isawaitable(answer):
        answer = await answer
    if not isinstance(answer, Response):
        raise TypeError(f"the handler of {type(error).__name__} answered {answer!r}")
    return answer
