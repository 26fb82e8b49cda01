"""Typed access to the resources the lifespan hands to every request.

The app's lifespan (taskapi.app) creates the engine, Redis client, thread pools and caches
and yields them as a dict; Starlette puts a shallow copy of it into every request's
`scope["state"]`. A module that reads some of them declares those keys as a TypedDict
beside the code that uses them (`DatabaseState` in core/db.py, `AuthState` in
auth/dependencies.py, ...). The app's `AppState` inherits all of them, so mypy checks that
the lifespan provides every key some module reads, with the type it expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from starlette.types import Scope

StateT = TypeVar("StateT", bound=Mapping[str, Any])


def lifespan_state(scope: Scope, view: type[StateT], /) -> StateT:  # noqa: ARG001 (a type)
    """This request's lifespan state, seen as the TypedDict `view` of the keys it reads."""
    return cast(StateT, scope["state"])
