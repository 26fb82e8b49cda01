"""Domain errors and their RFC 9457 problem+json rendering.

Services raise these; one handler turns each into a response, so no layer below the
router ever builds an HTTP answer itself. Middleware, which answers before any handler,
sends the same body with `send_problem`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope, Send

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """A refusal the client caused. `keep_changes` commits the request's transaction anyway,
    for refusals that must leave a trace (a failed-login count, a revoked token family)."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    # The documented shape of its body: `Problem`, or a subclass naming the extra members.
    problem_model: ClassVar[type[Problem]]

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        keep_changes: bool = False,
    ) -> None:
        self.detail = detail or HTTPStatus(self.status).phrase
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        self.keep_changes = keep_changes
        super().__init__(self.detail)


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Unauthorized(AppError):
    status = 401
    code = "not_authenticated"

    def __init__(
        self, detail: str = "Could not validate credentials", *, keep_changes: bool = False
    ) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, keep_changes=keep_changes)


class AccountGone(Unauthorized):
    """The caller was authenticated, then the account was deleted before a write that
    refers to it: what the next request would be told."""

    def __init__(self) -> None:
        super().__init__("The account no longer exists.")


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class EmailNotVerified(Forbidden):
    code = "email_not_verified"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PreconditionRequired(AppError):
    status = 428
    code = "precondition_required"


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"


# Answers built outside AppError (the validation handler, middleware): classes all the same,
# so their status and code are named once and the OpenAPI document can list them.
class ValidationFailed(BadRequest):
    code = "validation_error"


class InvalidJson(BadRequest):
    code = "invalid_json"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class RequestHeadersTooLarge(AppError):
    """Sent by the request middleware (core/middleware.py) before anything reads a header."""

    status = 431
    code = "request_headers_too_large"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """The documented shape of every error body (RFC 9457 plus our members)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "type": "https://taskapi.dev/problems/not-found",
                "title": "Not Found",
                "status": 404,
                "detail": "Task not found.",
                "code": "not_found",
                "request_id": "5f0c6c8e0d6c4a47b6a8f0d2f6c3e9a1",
            }
        },
    )

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None
    errors: list[FieldError] = Field(
        default_factory=list, description="Present on `validation_error`: what is wrong where."
    )


class ValidationProblem(Problem):
    """A request that is not valid: each field that is wrong, and why."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://taskapi.dev/problems/validation-error",
                "title": "Bad Request",
                "status": 400,
                "detail": "The request is not valid.",
                "code": "validation_error",
                "request_id": "5f0c6c8e0d6c4a47b6a8f0d2f6c3e9a1",
                "errors": [
                    {"field": "title", "message": "String should have at least 3 characters"}
                ],
            }
        }
    )

    errors: list[FieldError] = Field(description="What is wrong where.")


AppError.problem_model = Problem
ValidationFailed.problem_model = ValidationProblem


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    detail: str,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = problem_body(
        status=status,
        code=code,
        detail=detail,
        request_id=request_id_of(request),
        extra=extra,
    )
    return Response(
        content=orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def problem_body(
    *,
    status: int,
    code: str,
    detail: str,
    request_id: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "type": f"https://taskapi.dev/problems/{code.replace('_', '-')}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
        **(extra or {}),
    }


async def send_problem(
    send: Send,
    *,
    status: int,
    code: str,
    detail: str,
    request_id: str | None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer with a problem from raw ASGI code (middleware), where there is no Response."""
    body = orjson.dumps(
        problem_body(status=status, code=code, detail=detail, request_id=request_id)
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def request_id_of(request: Request | None) -> str | None:
    return None if request is None else request_id_in(request.scope)


def request_id_in(scope: Scope) -> str | None:
    """The id RequestContextMiddleware gave this request, for answers built below it."""
    value = scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def _field_name(location: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "Invalid value"))
    return message.removeprefix("Value error, ")


async def _app_error_handler(request: Request, exc: Exception) -> Response:
    exc = cast(AppError, exc)
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        detail=exc.detail,
        extra=exc.extra,
        headers=exc.headers,
    )


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    exc = cast(RequestValidationError, exc)
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        return problem_response(
            request,
            status=400,
            code=InvalidJson.code,
            detail="The request body is not valid JSON.",
        )
    return problem_response(
        request,
        status=400,
        code=ValidationFailed.code,
        detail="The request is not valid.",
        extra={
            "errors": [
                {
                    "field": _field_name(tuple(error.get("loc", ()))),
                    "message": _validation_message(error),
                }
                for error in errors
            ]
        },
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    exc = cast(StarletteHTTPException, exc)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource at this path."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(
        request,
        status=exc.status_code,
        code=_HTTP_CODES.get(exc.status_code, "http_error"),
        detail=detail,
        headers=headers,
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route answers at this path, and HEAD wherever GET is (the request
    middleware answers it). Starlette's own 405 names only the first route that matched the
    path, while FastAPI makes one route per method (GET and POST /tasks are two), so its
    `Allow` would leave methods out."""
    routes = request.app.router.routes
    allowed = {
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    }
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(method for method in _METHODS if method in allowed)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
