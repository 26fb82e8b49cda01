"""The refresh token as a cookie, for browsers (the web app): DESIGN §7.1.

A client asks for it with `X-Token-Transport: cookie` on register, login or refresh: the
new refresh token then travels only in an HttpOnly, SameSite=Strict cookie scoped to the
auth routes, so page scripts never see it, and the JSON body carries `refresh_token: null`.
Refresh and logout read the cookie only when the request carries that same header. A
cross-site form cannot send a custom header, and a cross-origin script needs CORS to, so
the cookie alone can neither refresh nor end a session. Without the header everything is
exactly the JSON token API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Response

from taskapi.auth import service
from taskapi.auth.schemas import TokenResponse
from taskapi.core.config import Settings
from taskapi.core.errors import AppError
from taskapi.core.schemas import document_not_nullable

REFRESH_COOKIE = "taskapi_refresh"
TOKEN_TRANSPORT_HEADER = "X-Token-Transport"  # noqa: S105 (a header name, not a secret)
SECONDS_PER_DAY = 86_400


def _cookie_mode(
    transport: Annotated[
        str | None,
        # A pattern, not Literal: generated clients (openapi-python-client) refuse a `const`
        # header parameter, and would leave out every route that takes this one.
        Header(
            alias=TOKEN_TRANSPORT_HEADER,
            pattern="^cookie$",
            description="`cookie`: the refresh token travels in the HttpOnly "
            f"`{REFRESH_COOKIE}` cookie instead of the JSON body (browsers).",
            json_schema_extra=document_not_nullable,
        ),
    ] = None,
) -> bool:
    return transport == "cookie"


CookieMode = Annotated[bool, Depends(_cookie_mode)]


def cookie_path(request: Request) -> str:
    """The auth routes' own path (`/api/v1/auth`): the cookie goes nowhere else."""
    refresh_path: str = request.app.url_path_for("refresh")
    return refresh_path.rsplit("/", 1)[0]


def presented_token(request: Request) -> str | None:
    return request.cookies.get(REFRESH_COOKIE)


def token_answer(
    tokens: service.LoginTokens,
    *,
    cookie_mode: bool,
    request: Request,
    response: Response,
    settings: Settings,
) -> TokenResponse:
    """The token response; in cookie mode the refresh token goes into the cookie instead."""
    answer = TokenResponse.model_validate(tokens)
    if not cookie_mode:
        return answer
    response.set_cookie(
        REFRESH_COOKIE,
        tokens.refresh_token,
        max_age=settings.refresh_token_expire_days * SECONDS_PER_DAY,
        path=cookie_path(request),
        secure=settings.is_production,
        httponly=True,
        samesite="strict",
    )
    return answer.model_copy(update={"refresh_token": None})


def _deletion(request: Request, settings: Settings) -> str:
    carrier = Response()
    carrier.delete_cookie(
        REFRESH_COOKIE,
        path=cookie_path(request),
        secure=settings.is_production,
        httponly=True,
        samesite="strict",
    )
    return carrier.headers["set-cookie"]


def forget_cookie(request: Request, response: Response, settings: Settings) -> None:
    response.headers.append("set-cookie", _deletion(request, settings))


def forget_cookie_on(error: AppError, request: Request, settings: Settings) -> AppError:
    """A refused cookie refresh also deletes the dead cookie."""
    error.headers["set-cookie"] = _deletion(request, settings)
    return error
