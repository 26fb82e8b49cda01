"""Pure ASGI middleware wrapped around every request.

One layer does request id, access log, security headers, the header size cap, HEAD and
the last-resort 500: each needs the same start/finish hooks, and every extra ASGI layer
costs on each request.

Headers are capped here, before anything reads them (the rate limiter verifies a bearer
token's signature): at most 16 KiB in all and 4 KiB of Authorization, or 431. The server in
front may hold a larger header block in memory first (uvicorn with httptools has no limit
of its own); this cap holds behind any server.

HEAD is answered wherever GET is (RFC 9110 §9.3.2; load balancers probe with it): the
layers inside see a GET, and the body of its answer is left out, whichever server runs us.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskapi.core.errors import PROBLEM_JSON, RequestHeadersTooLarge, send_problem

MAX_HEADER_BYTES = 16 * 1024
"""All request headers together, each counted as sent: name, value, ": " and CRLF."""
MAX_AUTHORIZATION_BYTES = 4 * 1024
"""Our tokens are a few hundred bytes; anything much longer is refused before decoding."""

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_API_PATH_PREFIXES = ("/api/", "/health")

log = structlog.get_logger("taskapi.request")


def _security_headers(*, hsts: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
    ]
    if hsts:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = _security_headers(hsts=hsts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        path: str = scope["path"]
        no_store = path.startswith(_API_PATH_PREFIXES)
        started = time.perf_counter()
        status = 500
        response_started = False
        sent_at = 0.0
        structlog.contextvars.bind_contextvars(request_id=request_id)
        method: str = scope["method"]
        inner_scope = {**scope, "method": "GET"} if method == "HEAD" else scope

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started, sent_at
            if method == "HEAD" and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await send(message)
                # A route's background tasks run after this, inside the same ASGI call:
                # the latency a client sees ends here.
                sent_at = time.perf_counter()
                return
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                headers.extend(self.headers)
                if (no_store or _is_problem(headers)) and not any(
                    name.lower() == b"cache-control" for name, _ in headers
                ):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            oversized = _oversized_headers(scope["headers"])
            if oversized is None:
                await self.app(inner_scope, receive, send_with_headers)
            else:
                await send_problem(
                    send_with_headers,
                    status=RequestHeadersTooLarge.status,
                    code=RequestHeadersTooLarge.code,
                    detail=oversized,
                    request_id=request_id,
                    headers=[(b"connection", b"close")],
                )
        except Exception:
            log.exception("unhandled_error", method=method, path=path)
            if response_started:
                raise
            await send_problem(
                send_with_headers,
                status=500,
                code="internal_error",
                detail="An unexpected error occurred.",
                request_id=request_id,
            )
        finally:
            finished = sent_at or time.perf_counter()
            log.info(
                "request",
                method=method,
                path=path,
                status=status,
                duration_ms=round((finished - started) * 1000, 2),
                user_id=state.get("user_id"),
            )
            structlog.contextvars.unbind_contextvars("request_id")


def _is_problem(headers: list[tuple[bytes, bytes]]) -> bool:
    """An error answer is never cached, on a page or file path as on the API."""
    return (b"content-type", PROBLEM_JSON.encode()) in (
        (name.lower(), value) for name, value in headers
    )


def _oversized_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why the request's headers are refused, or None."""
    total = 0
    for name, value in headers:
        if name == b"authorization" and len(value) > MAX_AUTHORIZATION_BYTES:
            return f"The Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes."
        total += len(name) + len(value) + 4
    if total > MAX_HEADER_BYTES:
        return f"The request headers are larger than {MAX_HEADER_BYTES} bytes in all."
    return None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _SANE_REQUEST_ID.match(candidate) else None
    return None
