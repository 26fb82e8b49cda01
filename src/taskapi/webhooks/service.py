"""Webhook rules and queries, and the consumer that turns a change into deliveries.

Every query goes through `_owned`: another user's webhook is invisible like a missing one.
A delivery is a row of the log plus a job (webhooks/jobs.py), both written in the
transaction of the change that caused the event.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Select, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.errors import BadRequest, NotFound
from taskapi.core.events import Event
from taskapi.core.jobs import enqueue
from taskapi.core.models import new_id, utcnow
from taskapi.webhooks import delivery
from taskapi.webhooks.jobs import DELIVER, DeliveryJob
from taskapi.webhooks.models import Webhook, WebhookDelivery
from taskapi.webhooks.schemas import PING, WebhookCreate, WebhookUpdate

MAX_WEBHOOKS = 20
DELIVERY_LOG_LENGTH = 100
SECRET_OVERLAP = timedelta(hours=24)
"""How long the secret before a rotation still signs deliveries."""


class WebhookNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Webhook not found.")


class WebhookLimitReached(BadRequest):
    code = "webhook_limit_reached"

    def __init__(self) -> None:
        super().__init__(f"You already have {MAX_WEBHOOKS} webhooks, the most there may be.")


class InvalidWebhookUrl(BadRequest):
    code = "invalid_webhook_url"

    def __init__(self, message: str) -> None:
        super().__init__(
            f"The webhook URL is not one deliveries can go to: {message}.",
            extra={"errors": [{"field": "url", "message": message}]},
        )


class WebhookTargetNotAllowed(InvalidWebhookUrl):
    """The URL's host is, or resolves to, a loopback, private, link-local or other
    non-public address."""

    code = "webhook_target_not_allowed"


def _owned(user: User) -> Select[Webhook]:
    return select(Webhook).where(Webhook.user_id == user.id)


async def _checked_url(url: str, settings: Settings) -> str:
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError) as error:  # UnicodeError: a host IDNA refuses
        raise InvalidWebhookUrl("not a URL") from error
    allowed = ("https",) if settings.is_production else ("https", "http")
    if target.scheme not in allowed:
        raise InvalidWebhookUrl(f"the scheme must be {' or '.join(allowed)}")
    if not target.host:
        raise InvalidWebhookUrl("the URL has no host")
    if target.userinfo:
        raise InvalidWebhookUrl("credentials in the URL are not accepted")
    try:
        await delivery.checked_address(target, allow_private=settings.webhook_allow_private_targets)
    except delivery.TargetRefused as refused:
        raise WebhookTargetNotAllowed(str(refused)) from refused
    return str(target)


async def create_webhook(
    *, session: AsyncSession, user: User, data: WebhookCreate, settings: Settings
) -> Webhook:
    """At most MAX_WEBHOOKS: the count is taken with the user row locked, so two concurrent
    creates cannot both take the last place. FOR NO KEY UPDATE on PostgreSQL (rows referring
    to the user stay insertable meanwhile); on SQLite the locking read takes the write lock
    (BEGIN IMMEDIATE, core/db.py) before the count. The URL is checked first, so its DNS
    lookup holds no lock."""
    url = await _checked_url(data.url, settings)
    await session.scalar(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
    count = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.user_id == user.id)
    )
    if (count or 0) >= MAX_WEBHOOKS:
        raise WebhookLimitReached
    webhook = Webhook(
        user_id=user.id,
        url=url,
        events=sorted(set(data.events)),
        description=data.description,
        enabled=True,
        secret=delivery.new_secret(),
    )
    session.add(webhook)
    await session.flush()
    return webhook


async def list_webhooks(*, session: AsyncSession, user: User) -> list[Webhook]:
    return list(await session.scalars(_owned(user).order_by(Webhook.created_at, Webhook.id)))


async def get_webhook(*, session: AsyncSession, user: User, webhook_id: uuid.UUID) -> Webhook:
    webhook = await session.scalar(_owned(user).where(Webhook.id == webhook_id))
    if webhook is None:
        raise WebhookNotFound
    return webhook


async def update_webhook(
    *,
    session: AsyncSession,
    user: User,
    webhook_id: uuid.UUID,
    data: WebhookUpdate,
    settings: Settings,
) -> Webhook:
    webhook = await get_webhook(session=session, user=user, webhook_id=webhook_id)
    changes = data.model_dump(exclude_unset=True)
    if "url" in changes:
        changes["url"] = await _checked_url(changes["url"], settings)
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]))
    for field, value in changes.items():
        setattr(webhook, field, value)
    await session.flush()
    return webhook


async def delete_webhook(*, session: AsyncSession, user: User, webhook_id: uuid.UUID) -> None:
    """Its deliveries go with it (ON DELETE CASCADE); their jobs then find nothing to do."""
    webhook = await get_webhook(session=session, user=user, webhook_id=webhook_id)
    await session.delete(webhook)
    await session.flush()


async def rotate_secret(
    *, session: AsyncSession, user: User, webhook_id: uuid.UUID
) -> tuple[Webhook, datetime]:
    """A new secret; the current one keeps signing beside it for SECRET_OVERLAP."""
    webhook = await get_webhook(session=session, user=user, webhook_id=webhook_id)
    expires_at = utcnow() + SECRET_OVERLAP
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_expires_at = expires_at
    webhook.secret = delivery.new_secret()
    await session.flush()
    return webhook, expires_at


async def send_test_event(*, session: AsyncSession, user: User, webhook_id: uuid.UUID) -> None:
    webhook = await get_webhook(session=session, user=user, webhook_id=webhook_id)
    await _queue_delivery(
        session, webhook.id, event_type=PING, data={"webhook_id": str(webhook.id)}, at=utcnow()
    )


async def list_deliveries(
    *, session: AsyncSession, user: User, webhook_id: uuid.UUID
) -> list[WebhookDelivery]:
    webhook = await get_webhook(session=session, user=user, webhook_id=webhook_id)
    return list(
        await session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook.id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(DELIVERY_LOG_LENGTH)
        )
    )


# Built once: every change of every user runs it, and most users have no webhook.
_SUBSCRIPTIONS = select(Webhook.id, Webhook.events).where(
    Webhook.user_id == bindparam("user_id"), Webhook.enabled.is_(True)
)


async def deliver_event(session: AsyncSession, event: Event) -> None:
    """The event consumer (core/events.py): one delivery per enabled webhook of the user
    that subscribed to the event, in the change's transaction."""
    connection = await session.connection()
    webhook_ids = [
        webhook_id
        for webhook_id, events in await connection.execute(
            _SUBSCRIPTIONS, {"user_id": event.user_id}
        )
        if event.type in events
    ]
    if not webhook_ids:
        return
    data = dict(await event.render())
    for webhook_id in webhook_ids:
        await _queue_delivery(
            session, webhook_id, event_type=event.type, data=data, at=event.occurred_at
        )


# A Core INSERT built once: a delivery is written with every change a webhook hears of.
_INSERT_DELIVERY = insert(WebhookDelivery)


async def _queue_delivery(
    session: AsyncSession,
    webhook_id: uuid.UUID,
    *,
    event_type: str,
    data: dict[str, Any],
    at: datetime,
) -> None:
    body = json.dumps(
        {"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    now = utcnow()
    delivery_id = new_id()
    connection = await session.connection()
    await connection.execute(
        _INSERT_DELIVERY,
        {
            "id": delivery_id,
            "webhook_id": webhook_id,
            "event": event_type,
            "body": body,
            "attempts": 0,
            "status_code": None,
            "duration_ms": None,
            "last_error": None,
            "delivered_at": None,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    await enqueue(session, DELIVER, DeliveryJob(delivery_id=delivery_id), run_at=now)
