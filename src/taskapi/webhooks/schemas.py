"""Request and response bodies of the /webhooks endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.config import JsonDict

from taskapi.core.schemas import Omittable
from taskapi.core.text import NoNul
from taskapi.webhooks.models import MAX_DESCRIPTION_LENGTH, MAX_URL_LENGTH


class EventType(StrEnum):
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_COMPLETED = "task.completed"
    TASK_DELETED = "task.deleted"
    TASK_RESTORED = "task.restored"
    CATEGORY_CREATED = "category.created"
    CATEGORY_UPDATED = "category.updated"
    CATEGORY_DELETED = "category.deleted"


PING = "ping"
"""The event `POST /webhooks/{id}/test` sends; not one to subscribe to."""

WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH),
    NoNul(),
    Field(
        description="Where deliveries are POSTed: `https://` (`http://` too outside "
        "production). Its host must resolve to public addresses only."
    ),
]
EventList = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EventType), description="The events to deliver."),
]
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION_LENGTH),
    NoNul(),
]

_WEBHOOK_EXAMPLE: JsonDict = {
    "id": "01937a4e-9d3c-7f52-8b68-4d2e3c5f6a71",
    "url": "https://hooks.example.com/taskapi",
    "events": ["task.created", "task.completed"],
    "description": "Team chat",
    "enabled": True,
    "created_at": "2026-11-21T08:00:00Z",
    "updated_at": "2026-11-21T08:00:00Z",
}
_SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 (an example)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "url": "https://hooks.example.com/taskapi",
                "events": ["task.created", "task.completed"],
                "description": "Team chat",
            }
        }
    )

    url: WebhookUrl
    events: EventList
    description: Description | None = None


class WebhookUpdate(BaseModel):
    """Absent fields stay as they are; `description` may be cleared with null."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"events": ["task.completed"], "enabled": False}}
    )

    url: Omittable[WebhookUrl] = None
    events: Omittable[EventList] = None
    enabled: Omittable[bool] = None
    description: Description | None = None


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": _WEBHOOK_EXAMPLE})

    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead):
    """The webhook with its signing secret, shown only in this answer."""

    model_config = ConfigDict(
        json_schema_extra={"example": {**_WEBHOOK_EXAMPLE, "secret": _SECRET_EXAMPLE}}
    )

    secret: str = Field(description="`whsec_` + base64 key; verify deliveries with it.")


class WebhookSecret(BaseModel):
    """A new signing secret, shown only here. The previous one keeps signing (a second
    signature in `webhook-signature`) until `previous_secret_expires_at`."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "secret": _SECRET_EXAMPLE,
                "previous_secret_expires_at": "2026-11-22T08:00:00Z",
            }
        }
    )

    secret: str
    previous_secret_expires_at: datetime


class WebhookList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"items": [_WEBHOOK_EXAMPLE], "total": 1}}
    )

    items: list[WebhookRead]
    total: int


_DELIVERY_EXAMPLE: JsonDict = {
    "id": "01937a4f-0a1b-7c2d-8e3f-405162738495",
    "event": "task.completed",
    "status_code": 200,
    "attempts": 2,
    "delivered_at": "2026-11-21T08:00:06Z",
    "next_attempt_at": None,
    "duration_ms": 84,
}


class DeliveryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"example": _DELIVERY_EXAMPLE}
    )

    id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt.")
    event: str
    attempts: int
    status_code: int | None = Field(
        default=None, description="The last attempt's status; null: no answer (yet)."
    )
    delivered_at: datetime | None = None
    next_attempt_at: datetime | None = Field(
        default=None, description="When it is tried again; null once delivered or given up."
    )
    duration_ms: int | None = None


class DeliveryList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"items": [_DELIVERY_EXAMPLE]}})

    items: list[DeliveryRead]
