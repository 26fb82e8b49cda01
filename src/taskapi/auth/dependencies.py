"""What routers declare to get the caller and auth's resources.

The caller: `CurrentUser` and `SignedIn` on the account routes, which only a password
sign-in may use (a personal access token gets 403 `insufficient_scope` there); on every
other route one of `TasksRead`, `TasksWrite`, `CategoriesRead`, `CategoriesWrite`,
`WebhooksManage`, which declares the scope a personal access token needs for it (the
OpenAPI document shows it) and refuses an account whose email is not verified yet.
Resources: `ClientDep`, `UserCacheDep`, `PasswordHasherDep`.

A bearer token is either an access token (a JWT: signature, expiry, issuer and audience
verified here, then `service.authenticate` finds its user through the user cache) or a
personal access token (`tapi_…`, looked up by `personal_tokens.authenticate`).

FastAPI solves every dependency of every request, so each of these is one level that
authenticates (`_caller`, once per request, whichever asks first) and reads the
Authorization header itself, with no FastAPI security schemes or shared caller dependency
beneath it: those were four of the seven dependencies of a task route. The schemes still
describe the routes in the OpenAPI document: `AUTHENTICATION` tells core/openapi.py which
dependencies authenticate and what they accept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Request, Security
from fastapi.security import HTTPBearer, OAuth2PasswordBearer, SecurityScopes
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth import families, personal_tokens, service
from taskapi.auth.cache import UserCache
from taskapi.auth.metrics import record_auth_failure
from taskapi.auth.models import Scope, User
from taskapi.auth.personal_tokens import InsufficientScope
from taskapi.core.config import Settings, SettingsState
from taskapi.core.db import DatabaseState, SessionDep
from taskapi.core.errors import EmailNotVerified, Unauthorized
from taskapi.core.models import utcnow
from taskapi.core.openapi import Authentication
from taskapi.core.security import (
    AccessClaims,
    InvalidToken,
    PasswordHasher,
    bearer_token,
    decode_access_token,
)
from taskapi.core.state import lifespan_state


class AuthState(SettingsState):
    """The resources auth reads from the lifespan state."""

    user_cache: UserCache
    password_hasher: PasswordHasher


async def get_password_hasher(request: Request) -> PasswordHasher:
    return lifespan_state(request.scope, AuthState)["password_hasher"]


async def get_user_cache(request: Request) -> UserCache:
    return lifespan_state(request.scope, AuthState)["user_cache"]


async def get_client(request: Request) -> families.Client:
    """The client as a session records it; `request.client` already went through the
    trusted-proxy rule (ProxyHeadersMiddleware)."""
    return families.Client(
        user_agent=request.headers.get("user-agent") or None,
        ip=request.client.host if request.client else None,
    )


PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
UserCacheDep = Annotated[UserCache, Depends(get_user_cache)]
ClientDep = Annotated[families.Client, Depends(get_client)]

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    scopes={str(scope): text for scope, text in personal_tokens.SCOPE_DESCRIPTIONS.items()},
    description="Sign in with email and password: the access token it gives has every scope.",
)
bearer_scheme = HTTPBearer(
    scheme_name="BearerToken",
    description="A personal access token (`tapi_…`, limited to its scopes) or an access "
    "token from sign-in.",
)


_CALLER = "taskapi.caller"
"""Where the request's scope keeps its authenticated caller."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: a user, through a sign-in (`family_id`, the `sid` of its access
    token) or through a personal access token (`grant`)."""

    user: User
    family_id: uuid.UUID | None
    grant: personal_tokens.Grant | None


def _verified_claims(settings: Settings, token: str) -> AccessClaims:
    try:
        return decode_access_token(settings=settings, token=token)
    except InvalidToken as error:
        record_auth_failure("invalid_access_token")
        raise Unauthorized() from error


async def _caller(
    request: Request, session: AsyncSession, background_tasks: BackgroundTasks
) -> Caller:
    """Authenticates once per request, whichever dependency asks first (a route may take
    both its scoped user and the caller, as Idempotency-Key routes do).

    Detached user (from the user cache): services load the row themselves to change it.
    """
    known: Caller | None = request.scope.get(_CALLER)
    if known is not None:
        return known
    token = bearer_token(request.scope)
    if token is None:
        raise Unauthorized("Not authenticated")
    state = lifespan_state(request.scope, AuthState)
    if personal_tokens.is_personal_token(token):
        grant = await personal_tokens.authenticate(session=session, token=token)
        user = (
            await service.cached_user(
                session=session,
                cache=state["user_cache"],
                settings=state["settings"],
                user_id=grant.user_id,
            )
        ).user
        if grant.use_is_worth_recording(utcnow()):
            sessionmaker = lifespan_state(request.scope, DatabaseState)["sessionmaker"]
            background_tasks.add_task(personal_tokens.record_use, sessionmaker, grant.token_id)
        caller = Caller(user=user, family_id=None, grant=grant)
    else:
        claims = _verified_claims(state["settings"], token)
        user = await service.authenticate(
            session=session, cache=state["user_cache"], settings=state["settings"], claims=claims
        )
        caller = Caller(user=user, family_id=claims.family_id, grant=None)
    request.state.user_id = str(user.id)
    request.scope[_CALLER] = caller
    return caller


def authenticated_caller(request: Request) -> Caller:
    """The caller a dependency solved before this one authenticated (say, the route's
    scoped user), without another level of dependencies for FastAPI to solve."""
    caller: Caller | None = request.scope.get(_CALLER)
    if caller is None:
        raise RuntimeError("no dependency has authenticated this request yet")
    return caller


@dataclass(frozen=True, slots=True)
class SignedInCaller:
    user: User
    family_id: uuid.UUID


async def get_signed_in(
    request: Request, session: SessionDep, background_tasks: BackgroundTasks
) -> SignedInCaller:
    """Account routes (sessions, tokens, profile, password, deletion, sign-out): a password
    sign-in only, verified email or not."""
    caller = await _caller(request, session, background_tasks)
    if caller.family_id is None:
        raise InsufficientScope(None)
    return SignedInCaller(user=caller.user, family_id=caller.family_id)


SignedIn = Annotated[SignedInCaller, Depends(get_signed_in)]


async def get_current_user(
    request: Request, session: SessionDep, background_tasks: BackgroundTasks
) -> User:
    """The signed-in user, authenticated here rather than through `SignedIn`: each level of
    dependencies is one more for FastAPI to solve on every request."""
    return (await get_signed_in(request, session, background_tasks)).user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_scoped_user(
    security_scopes: SecurityScopes,
    request: Request,
    session: SessionDep,
    background_tasks: BackgroundTasks,
) -> User:
    """Task, category and webhook routes: a personal access token needs the route's scope,
    and an unverified account may sign in but not work yet."""
    caller = await _caller(request, session, background_tasks)
    if caller.grant is not None:
        for scope in security_scopes.scopes:
            if not caller.grant.allows(Scope(scope)):
                raise InsufficientScope(Scope(scope))
    settings = lifespan_state(request.scope, AuthState)["settings"]
    if settings.require_email_verification and not caller.user.is_active:
        raise EmailNotVerified("Verify your email address before using this endpoint.")
    return caller.user


SCOPE_REFUSALS = (EmailNotVerified, InsufficientScope)
"""The 403s of a route behind one of the scoped callers below, for its `responses=`."""

TasksRead = Annotated[User, Security(get_scoped_user, scopes=[Scope.TASKS_READ])]
TasksWrite = Annotated[User, Security(get_scoped_user, scopes=[Scope.TASKS_WRITE])]
CategoriesRead = Annotated[User, Security(get_scoped_user, scopes=[Scope.CATEGORIES_READ])]
CategoriesWrite = Annotated[User, Security(get_scoped_user, scopes=[Scope.CATEGORIES_WRITE])]
WebhooksManage = Annotated[User, Security(get_scoped_user, scopes=[Scope.WEBHOOKS_MANAGE])]

AUTHENTICATION = Authentication(
    dependencies=frozenset({get_signed_in, get_current_user, get_scoped_user}),
    schemes=(oauth2_scheme, bearer_scheme),
)
