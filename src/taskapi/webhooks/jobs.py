"""Delivering webhooks: one job per attempt of a delivery.

The job makes one HTTP attempt, records it on the delivery (the log users read), and when it
failed queues the next attempt on the schedule below, all in its own transaction. So every
attempt is recorded once, a delivery is retried until a 2xx or RETRY_FOR has passed, and a
worker killed mid-attempt leaves the job to be taken again after its lease (the receiver may
then see that attempt twice, under the same `webhook-id`: at least once).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import structlog
from pydantic import BaseModel
from sqlalchemy import select

from taskapi.core.jobs import JobContext, JobKind, enqueue
from taskapi.core.models import utcnow
from taskapi.webhooks import delivery
from taskapi.webhooks.models import Webhook, WebhookDelivery

log = structlog.get_logger("taskapi.webhooks")

RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
)
"""After the first failed attempt, about 5 s; after the second, about 5 min; and so on."""
RETRY_FOR = timedelta(hours=24)
JITTER = 0.2


def next_attempt(*, attempts: int, created_at: datetime, now: datetime) -> datetime | None:
    """When to try again after `attempts` failed ones; None once the schedule is used up or
    the next try would come more than RETRY_FOR after the event."""
    if attempts > len(RETRY_DELAYS):
        return None
    delay = RETRY_DELAYS[attempts - 1].total_seconds()
    delay *= 1 + random.uniform(-JITTER, JITTER)  # noqa: S311 (spread, not secrecy)
    when = now + timedelta(seconds=delay)
    return None if when > created_at + RETRY_FOR else when


class DeliveryJob(BaseModel):
    delivery_id: uuid.UUID


async def deliver(context: JobContext, job: DeliveryJob) -> None:
    session = context.session
    found = (
        await session.execute(
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == job.delivery_id)
        )
    ).one_or_none()
    if found is None:
        return  # the webhook was deleted, and its deliveries with it
    row, webhook = found
    if row.delivered_at is not None or row.next_attempt_at is None:
        return
    if not webhook.enabled:
        row.next_attempt_at = None
        row.last_error = "the webhook is disabled"
        return
    signing = [webhook.secret]
    expires = webhook.previous_secret_expires_at
    if webhook.previous_secret is not None and expires is not None and expires > context.now:
        signing.append(webhook.previous_secret)
    message_id = str(row.id)
    timestamp = int(utcnow().timestamp())
    outcome = await delivery.attempt(
        webhook.url,
        headers={
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": delivery.signature_header(
                signing, message_id=message_id, timestamp=timestamp, body=row.body
            ),
        },
        body=row.body,
        allow_private=context.settings.webhook_allow_private_targets,
    )
    row.attempts += 1
    row.status_code = outcome.status_code
    row.duration_ms = outcome.duration_ms
    row.last_error = outcome.error
    if outcome.succeeded:
        row.delivered_at = context.now
        row.next_attempt_at = None
        return
    row.next_attempt_at = next_attempt(
        attempts=row.attempts, created_at=row.created_at, now=context.now
    )
    log.warning(
        "webhook_delivery_failed",
        delivery_id=message_id,
        webhook_id=str(webhook.id),
        attempt=row.attempts,
        error=outcome.error,
        gave_up=row.next_attempt_at is None,
    )
    if row.next_attempt_at is not None:
        await enqueue(session, DELIVER, job, run_at=row.next_attempt_at)


DELIVER = JobKind(
    name="webhooks.deliver",
    payload=DeliveryJob,
    handler=deliver,
    timeout=timedelta(seconds=delivery.ATTEMPT_TIMEOUT_SECONDS + 10),
)

JOB_KINDS = (DELIVER,)
