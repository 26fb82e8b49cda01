"""The web app: static files under /static and the app shell for every other page path.

The app routes in the browser (History API), so `/tasks/…`, `/verify-email?token=…` and
the like are all the same `index.html`; only the API, the docs, health, metrics and the
static files keep their own answers, and an unknown path under them stays a 404 problem.

Pages carry a strict Content-Security-Policy: everything comes from this origin and
nothing inline runs, so injected markup could neither run script nor load anything.
Swagger UI and ReDoc (/docs, /redoc) load from a CDN and are left without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Match, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_ROOT = Path(__file__).resolve().parent
STATIC_PATH = "/static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Static files are revalidated on every use (a cheap 304 by ETag): their names carry no
# version, and a page must never mix modules of two releases.
STATIC_CACHE_CONTROL = "no-cache"
SHELL_CACHE_CONTROL = "no-store"

# Paths that never answer the shell: their own routes answer, or 404 as a problem.
RESERVED_PREFIXES = ("/api", "/docs", "/redoc", "/openapi.json", "/health", "/metrics", STATIC_PATH)

# Explicit, so a platform's mimetypes table (the Windows registry maps .js to text/plain
# on some machines) cannot stop the browser from running a module.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}


def is_reserved(path: str) -> bool:
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in RESERVED_PREFIXES)


class StaticAssets(StaticFiles):
    def file_response(
        self, full_path: os.PathLike[str] | str, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().file_response(full_path, *args, **kwargs)
        content_type = CONTENT_TYPES.get(Path(full_path).suffix)
        if content_type is not None:
            response.headers["Content-Type"] = content_type
        response.headers["Cache-Control"] = STATIC_CACHE_CONTROL
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


class ShellRoute(Route):
    """GET (and HEAD) on any path that is not reserved."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or is_reserved(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


async def app_shell(_request: Request) -> Response:
    return FileResponse(
        WEB_ROOT / "index.html",
        media_type=CONTENT_TYPES[".html"],
        headers={
            "Cache-Control": SHELL_CACHE_CONTROL,
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        },
    )


def install(app: FastAPI) -> None:
    """Serve the web app. Call after every other route: the shell takes what is left."""
    app.mount(STATIC_PATH, StaticAssets(directory=WEB_ROOT / "static"), name="static")
    app.router.routes.append(
        ShellRoute("/{path:path}", app_shell, methods=["GET"], include_in_schema=False)
    )
