"""HTTP face of the webhooks under /webhooks: parse, call one service function, answer."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from taskapi.auth.dependencies import SCOPE_REFUSALS, WebhooksManage
from taskapi.core.config import SettingsDep
from taskapi.core.db import SessionDep
from taskapi.core.headers import set_location
from taskapi.core.openapi import problem_responses
from taskapi.webhooks import service
from taskapi.webhooks.models import Webhook, WebhookDelivery
from taskapi.webhooks.schemas import (
    DeliveryList,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

_URL_PROBLEMS = (service.InvalidWebhookUrl, service.WebhookTargetNotAllowed)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    summary="Create a webhook",
    description="Deliveries of the chosen events start at once, signed with `secret`, which "
    "this answer alone shows. The URL's host must resolve to public addresses only "
    "(`webhook_target_not_allowed` otherwise); `https` is required in production. At most "
    f"{service.MAX_WEBHOOKS} webhooks per user.",
    responses=problem_responses(
        400, *_URL_PROBLEMS, service.WebhookLimitReached, 401, *SCOPE_REFUSALS
    ),
)
async def create_webhook(
    body: WebhookCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    user: WebhooksManage,
    settings: SettingsDep,
) -> Webhook:
    webhook = await service.create_webhook(session=session, user=user, data=body, settings=settings)
    set_location(response, request, "get_webhook", webhook_id=str(webhook.id))
    return webhook


@router.get(
    "",
    response_model=WebhookList,
    summary="List your webhooks",
    description="Oldest first; secrets are never shown again.",
    responses=problem_responses(401, *SCOPE_REFUSALS),
)
async def list_webhooks(session: SessionDep, user: WebhooksManage) -> WebhookList:
    webhooks = await service.list_webhooks(session=session, user=user)
    return WebhookList(
        items=[WebhookRead.model_validate(webhook) for webhook in webhooks], total=len(webhooks)
    )


@router.get(
    "/{webhook_id}",
    response_model=WebhookRead,
    summary="Get one webhook",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def get_webhook(webhook_id: uuid.UUID, session: SessionDep, user: WebhooksManage) -> Webhook:
    return await service.get_webhook(session=session, user=user, webhook_id=webhook_id)


@router.patch(
    "/{webhook_id}",
    response_model=WebhookRead,
    summary="Change a webhook",
    description="Only the fields sent change. `enabled: false` pauses deliveries: those "
    "not yet delivered are given up.",
    responses=problem_responses(400, *_URL_PROBLEMS, 401, *SCOPE_REFUSALS, 404),
)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    session: SessionDep,
    user: WebhooksManage,
    settings: SettingsDep,
) -> Webhook:
    return await service.update_webhook(
        session=session, user=user, webhook_id=webhook_id, data=body, settings=settings
    )


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a webhook",
    description="Its delivery log goes with it, and nothing more is sent.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def delete_webhook(webhook_id: uuid.UUID, session: SessionDep, user: WebhooksManage) -> None:
    await service.delete_webhook(session=session, user=user, webhook_id=webhook_id)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=WebhookSecret,
    summary="Rotate a webhook's signing secret",
    description="Answers the new secret (shown only here). For 24 hours deliveries carry "
    "two signatures, one per secret, so receivers can switch at their pace.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def rotate_webhook_secret(
    webhook_id: uuid.UUID, session: SessionDep, user: WebhooksManage
) -> WebhookSecret:
    webhook, expires_at = await service.rotate_secret(
        session=session, user=user, webhook_id=webhook_id
    )
    return WebhookSecret(secret=webhook.secret, previous_secret_expires_at=expires_at)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    summary="Send a test event",
    description="Queues a `ping` event to the webhook; its delivery shows in the log.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def ping_webhook(webhook_id: uuid.UUID, session: SessionDep, user: WebhooksManage) -> None:
    await service.send_test_event(session=session, user=user, webhook_id=webhook_id)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    summary="The webhook's last deliveries",
    description=f"The last {service.DELIVERY_LOG_LENGTH}, newest first.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID, session: SessionDep, user: WebhooksManage
) -> dict[str, list[WebhookDelivery]]:
    return {
        "items": await service.list_deliveries(session=session, user=user, webhook_id=webhook_id)
    }
