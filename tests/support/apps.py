"""The app under test: the fixture factories' types, the lifespan state of a started app,
and an in-process HTTP client that hands that state to every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast
from weakref import WeakKeyDictionary

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from taskapi.app import AppState
from taskapi.core.config import Settings

SettingsFactory = Callable[..., Settings]
"""`make_settings(**overrides)`: the test settings with some values changed."""

AppFactory = Callable[[Settings], Awaitable[FastAPI]]
"""`app_factory(settings)`: a started app (lifespan entered), stopped after the test."""

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}
"""Headers every answer carries, errors included."""


_LIFESPAN_STATES: WeakKeyDictionary[FastAPI, AppState] = WeakKeyDictionary()


def keep_state(app: FastAPI, state: Mapping[str, Any] | None) -> None:
    """Remembers what a started app's lifespan yielded (app_factory calls this): the
    AppState of taskapi.app.open_resources, which Starlette types as a plain mapping."""
    assert isinstance(state, dict), state
    _LIFESPAN_STATES[app] = cast("AppState", state)


def state_of(app: FastAPI) -> AppState:
    """The resources the lifespan of a started app created. A test may swap one (the
    password hasher, say): every request after that gets the new one."""
    return _LIFESPAN_STATES[app]


def with_lifespan_state(app: FastAPI) -> ASGIApp:
    """The app as a server runs it after its lifespan started: every request gets a copy
    of the lifespan state (httpx's ASGITransport runs no lifespan)."""
    state = state_of(app)

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return serve


def make_client(app: FastAPI) -> httpx.AsyncClient:
    """A client calling the app in process, as a peer on 127.0.0.1."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=with_lifespan_state(app), client=("127.0.0.1", 50000)),
        base_url="http://testserver",
    )
