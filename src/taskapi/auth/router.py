"""Registration, verification, sign-in, refresh, sign-out and password reset under /auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from taskapi.auth import service
from taskapi.auth.cookies import (
    CookieMode,
    forget_cookie,
    forget_cookie_on,
    presented_token,
    token_answer,
)
from taskapi.auth.dependencies import ClientDep, CurrentUser, PasswordHasherDep, UserCacheDep
from taskapi.auth.models import User
from taskapi.auth.personal_tokens import InsufficientScope
from taskapi.auth.schemas import (
    Accepted,
    EmailRequest,
    LoginForm,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    ResetPasswordRequest,
    TokenResponse,
    UserRead,
    VerifyEmailRequest,
)
from taskapi.core.config import SettingsDep
from taskapi.core.db import SessionDep
from taskapi.core.errors import AppError
from taskapi.core.openapi import problem_responses, request_body
from taskapi.core.ratelimit import limit_attempts_on_account
from taskapi.core.schemas import document_not_nullable

router = APIRouter(prefix="/auth", tags=["auth"])

FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_SIGN_IN_ERRORS = problem_responses(400, service.InvalidCredentials, service.AccountLocked)
EMAIL_ON_ITS_WAY = Accepted(
    detail="If the address belongs to an account that needs it, an email is on its way."
)


async def login_credentials(request: Request) -> LoginRequest:
    """JSON `{email, password}`, or the OAuth2 password form (`username`, `password`) that
    the Authorize button of /docs posts. Both paths take both, so clients written before
    /auth/token existed keep working; each documents one."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if content_type in FORM_CONTENT_TYPES:
            form = LoginForm.model_validate(dict((await request.form()).items()))
            return LoginRequest(email=form.username, password=form.password)
        body = await request.body()
        if not body:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
            )
        return LoginRequest.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from error


async def counted_login_credentials(
    request: Request,
    credentials: Annotated[LoginRequest, Depends(login_credentials)],
    settings: SettingsDep,
) -> LoginRequest:
    """The credentials, once the attempt is counted against the account it names (429
    beyond the per-account limit), before any password is checked."""
    await limit_attempts_on_account(request.scope, settings, account=credentials.email)
    return credentials


SignInCredentials = Annotated[LoginRequest, Depends(counted_login_credentials)]


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenResponse,
    summary="Create an account",
    description="Signs the new account in at once. It stays inactive (no tasks or "
    "categories) until the emailed verification link is used.",
    responses=problem_responses(400, service.EmailTaken),
)
async def register(
    body: RegisterRequest,
    session: SessionDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
    client: ClientDep,
    cookie_mode: CookieMode,
    request: Request,
    response: Response,
) -> TokenResponse:
    tokens = await service.register(
        session=session,
        settings=settings,
        hasher=hasher,
        client=client,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
    )
    return token_answer(
        tokens, cookie_mode=cookie_mode, request=request, response=response, settings=settings
    )


@router.post(
    "/verify-email",
    response_model=UserRead,
    summary="Verify the email address with the emailed token",
    responses=problem_responses(400, service.InvalidLinkToken),
)
async def verify_email(body: VerifyEmailRequest, session: SessionDep, cache: UserCacheDep) -> User:
    return await service.verify_email(session=session, cache=cache, token=body.token)


@router.post(
    "/resend-verification",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Send a new verification email",
    description="The answer is the same whether or not the address has an account.",
    responses=problem_responses(400),
)
async def resend_verification(
    body: EmailRequest,
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
) -> Accepted:
    await service.resend_verification(
        session=session, cache=cache, settings=settings, email=body.email
    )
    return EMAIL_ON_ITS_WAY


@router.post(
    "/login",
    response_model=TokenResponse,
    summary="Sign in",
    description="Five failures in a row lock the account for 15 minutes. The OAuth2 password "
    "form is served at `POST /auth/token`.",
    responses=_SIGN_IN_ERRORS,
    openapi_extra=request_body({"application/json": LoginRequest}),
)
async def login(
    credentials: SignInCredentials,
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
    client: ClientDep,
    cookie_mode: CookieMode,
    request: Request,
    response: Response,
) -> TokenResponse:
    tokens = await service.login(
        session=session,
        cache=cache,
        settings=settings,
        hasher=hasher,
        client=client,
        email=credentials.email,
        password=credentials.password,
    )
    return token_answer(
        tokens, cookie_mode=cookie_mode, request=request, response=response, settings=settings
    )


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="Sign in with an OAuth2 password form",
    description="What OAuth2 tools and the Authorize button of /docs send (`username` is "
    "the email address); the answer and the lock-out are those of `POST /auth/login`.",
    responses=_SIGN_IN_ERRORS,
    openapi_extra=request_body({"application/x-www-form-urlencoded": LoginForm}),
)
async def login_form(
    credentials: SignInCredentials,
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
    client: ClientDep,
) -> service.LoginTokens:
    return await service.login(
        session=session,
        cache=cache,
        settings=settings,
        hasher=hasher,
        client=client,
        email=credentials.email,
        password=credentials.password,
    )


@router.post(
    "/refresh",
    response_model=TokenResponse,
    summary="Trade a refresh token for a new pair",
    description="The presented refresh token is dead afterwards. Presenting it again "
    "ends its whole session, the access tokens issued in it included. With "
    "`X-Token-Transport: cookie` the body may be left out: the refresh token is then read "
    "from, and its successor set in, the cookie.",
    responses=problem_responses(400, service.InvalidRefreshToken),
)
async def refresh(
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
    cookie_mode: CookieMode,
    request: Request,
    response: Response,
    body: Annotated[RefreshRequest | None, Body(json_schema_extra=document_not_nullable)] = None,
) -> TokenResponse:
    token = await _refresh_token_of(body, cookie_mode=cookie_mode, request=request)
    try:
        if token is None:
            raise service.InvalidRefreshToken("There is no refresh token cookie.")
        tokens = await service.refresh(
            session=session, cache=cache, settings=settings, refresh_token=token
        )
    except AppError as error:
        raise (forget_cookie_on(error, request, settings) if cookie_mode else error) from None
    return token_answer(
        tokens, cookie_mode=cookie_mode, request=request, response=response, settings=settings
    )


async def _refresh_token_of(
    body: RefreshRequest | None, *, cookie_mode: bool, request: Request
) -> str | None:
    """The body's refresh token, or in cookie mode (and no body at all) the cookie's.
    Without cookie mode a missing body is the validation error it always was; a JSON
    `null` body is one in every mode."""
    if body is not None:
        return body.refresh_token
    if await request.body():
        raise RequestValidationError(
            [{"type": "model_type", "loc": ("body",), "msg": "Must be an object", "input": None}]
        )
    if not cookie_mode:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    return presented_token(request)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End the session of a refresh token",
    description="Its refresh tokens and the access tokens issued in it stop working at once. "
    "With `X-Token-Transport: cookie` the body may be left out: the cookie's refresh token "
    "ends, and the cookie is deleted.",
    responses=problem_responses(400, 401, InsufficientScope),
)
async def logout(
    user: CurrentUser,
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
    cookie_mode: CookieMode,
    request: Request,
    response: Response,
    body: Annotated[RefreshRequest | None, Body(json_schema_extra=document_not_nullable)] = None,
) -> None:
    token = await _refresh_token_of(body, cookie_mode=cookie_mode, request=request)
    if token is not None:
        await service.logout(session=session, cache=cache, user_id=user.id, refresh_token=token)
    if cookie_mode:
        forget_cookie(request, response, settings)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End every session",
    description="Revokes every refresh token and every access token issued until now. "
    "With `X-Token-Transport: cookie` the refresh token cookie is deleted too.",
    responses=problem_responses(401, InsufficientScope),
)
async def logout_all(
    user: CurrentUser,
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
    cookie_mode: CookieMode,
    request: Request,
    response: Response,
) -> None:
    await service.logout_all(session=session, cache=cache, user_id=user.id)
    if cookie_mode:
        forget_cookie(request, response, settings)


@router.post(
    "/forgot-password",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Email a password reset link",
    description="The answer is the same whether or not the address has an account.",
    responses=problem_responses(400),
)
async def forgot_password(
    body: EmailRequest,
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
) -> Accepted:
    await service.forgot_password(session=session, cache=cache, settings=settings, email=body.email)
    return EMAIL_ON_ITS_WAY


@router.post(
    "/reset-password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Set a new password with the emailed token",
    description="Ends every session and lifts a lockout.",
    responses=problem_responses(400, service.InvalidLinkToken),
)
async def reset_password(
    body: ResetPasswordRequest,
    session: SessionDep,
    cache: UserCacheDep,
    hasher: PasswordHasherDep,
) -> None:
    await service.reset_password(
        session=session,
        cache=cache,
        hasher=hasher,
        token=body.token,
        new_password=body.new_password,
    )
