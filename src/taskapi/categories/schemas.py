"""Request and response bodies of the /categories endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from taskapi.categories.models import DEFAULT_COLOR
from taskapi.core.schemas import Omittable
from taskapi.core.text import NoNul

CategoryName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=50),
    NoNul(),
    Field(description="3 to 50 characters after trimming; unique among your categories."),
]
HexColor = Annotated[
    str,
    StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$"),
    AfterValidator(str.upper),
    Field(description="`#RRGGBB`; stored in upper case."),
]


class CategoryCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"name": "Work", "color": "#0EA5E9"}},
    )

    name: CategoryName
    color: HexColor = DEFAULT_COLOR


class CategoryUpdate(BaseModel):
    """Absent fields stay as they are; neither field may be set to null."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"name": "Office", "color": "#22C55E"}},
    )

    name: Omittable[CategoryName] = None
    color: Omittable[HexColor] = None


class CategoryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f60",
                "name": "Work",
                "color": "#6366F1",
                "created_at": "2026-11-21T08:00:00Z",
                "updated_at": "2026-11-21T08:00:00Z",
            }
        },
    )

    id: uuid.UUID
    name: str
    color: str
    created_at: datetime
    updated_at: datetime


class CategoryList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "items": [
                    {
                        "id": "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f60",
                        "name": "Work",
                        "color": "#6366F1",
                        "created_at": "2026-11-21T08:00:00Z",
                        "updated_at": "2026-11-21T08:00:00Z",
                    }
                ],
                "total": 1,
            }
        },
    )

    items: list[CategoryRead]
    total: int
