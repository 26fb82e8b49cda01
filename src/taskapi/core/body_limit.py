"""Refuse request bodies over 1 MiB with a 413 problem, counting what actually arrives.

Why not Starlette's RequestBodyLimitMiddleware (or FastAPI's `max_body_size`, which wraps
it): when Content-Length is too large it still runs the app - authentication, database -
and only swaps the response for a plain-text 413 as it starts; FastAPI places it outside
every user middleware, so that 413 also bypasses the request id and security headers.
Here a declared length over the limit is answered at once, without calling the app, and a
body without Content-Length (chunked) is counted as it is received: the first read past
the limit raises a 413 HTTPException, which FastAPI lets through from its body reading
(that happens before dependencies such as authentication) to our problem+json handler.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskapi.core.errors import PayloadTooLarge, request_id_in, send_problem

MAX_BODY_BYTES = 1024 * 1024
_DETAIL = f"The request body is larger than {MAX_BODY_BYTES} bytes."


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_problem(
                send,
                status=413,
                code=PayloadTooLarge.code,
                detail=_DETAIL,
                request_id=request_id_in(scope),
                headers=[(b"connection", b"close")],
            )
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413, detail=_DETAIL)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
