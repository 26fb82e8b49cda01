"""Domain events: what changed, published inside the transaction of the change.

A feature publishes an event right after its change, on the same session. The consumers
(the webhooks, which turn an event into deliveries queued as jobs) are wired by the app into
its sessionmaker (`event_consumers`), so core and the features never import them, and run
there and then: whatever they write commits or rolls back with the change. A session made
without consumers publishes to no one.

The event's data is rendered only when a consumer wants it (a user with no webhooks costs one
indexed look-up per change, not a serialisation).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.models import utcnow

_CONSUMERS = "taskapi.event_consumers"

Render = Callable[[], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Event:
    user_id: uuid.UUID
    type: str
    occurred_at: datetime
    render: Render
    """The event's data as JSON-ready values (the resource after the change)."""


EventConsumer = Callable[[AsyncSession, Event], Awaitable[None]]


def event_consumers(consumers: Sequence[EventConsumer]) -> dict[str, Any]:
    """The session `info` that makes `publish` call these consumers."""
    return {_CONSUMERS: tuple(consumers)}


async def publish(session: AsyncSession, *, user_id: uuid.UUID, type: str, render: Render) -> None:
    consumers: tuple[EventConsumer, ...] = session.info.get(_CONSUMERS, ())
    if not consumers:
        return
    event = Event(user_id=user_id, type=type, occurred_at=utcnow(), render=render)
    for consume in consumers:
        await consume(session, event)
