"""Webhook rules against a second transaction at once, on both databases."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskapi.core.config import Settings
from taskapi.webhooks import delivery, service
from taskapi.webhooks.models import Webhook
from taskapi.webhooks.schemas import WebhookCreate
from tests.support.apps import state_of
from tests.support.factories import SignedIn
from tests.support.races import until_a_session_waits_for_a_lock

# A literal public address: nothing is resolved, and creating sends nothing to it.
PUBLIC_LITERAL = "https://93.184.215.14/hook"


async def _until_a_create_waits(session: AsyncSession) -> None:
    """Returns once the other create waits for a lock. SQLite cannot tell a transaction that
    waits for its write lock, so there the create is given a moment to get as far as it can
    without one."""
    if session.get_bind().dialect.name == "sqlite":
        await asyncio.sleep(0.5)
        return
    await until_a_session_waits_for_a_lock(session, what="the second create")


async def test_a_create_racing_the_one_that_takes_the_last_place_is_refused(
    app: FastAPI, session: AsyncSession, settings: Settings, alice: SignedIn
) -> None:
    """Without the count under the user row's lock (the write lock on SQLite), the second
    create counts before the first commits, sees a place left, and stores a 21st webhook."""
    session.add_all(
        Webhook(
            user_id=alice.user.id,
            url=PUBLIC_LITERAL,
            events=["task.created"],
            enabled=True,
            secret=delivery.new_secret(),
        )
        for _ in range(service.MAX_WEBHOOKS - 1)
    )
    await session.commit()
    sessionmaker: async_sessionmaker[AsyncSession] = state_of(app)["sessionmaker"]
    data = WebhookCreate(url=PUBLIC_LITERAL, events=["task.created"])

    async with sessionmaker() as first, sessionmaker() as second:
        await service.create_webhook(session=first, user=alice.user, data=data, settings=settings)
        late = asyncio.create_task(
            service.create_webhook(session=second, user=alice.user, data=data, settings=settings)
        )
        await _until_a_create_waits(session)
        await first.commit()
        with pytest.raises(service.WebhookLimitReached):
            await late
        await second.rollback()

    stored = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.user_id == alice.user.id)
    )
    await session.commit()
    assert stored == service.MAX_WEBHOOKS
