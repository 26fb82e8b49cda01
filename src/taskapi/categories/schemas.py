from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    StringConstraints,
    field_validator,
)

from taskapi.categories.models import DEFAULT_COLOR
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


def _validated_as(annotation: object) -> GetPydanticSchema:
    """Validate an optional field as `annotation` alone: `null` is then a plain field error,
    not one error per member of `X | None` with the member's name in the location."""
    return GetPydanticSchema(lambda _source, handler: handler(annotation))


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

    name: Annotated[str | None, _validated_as(CategoryName)] = None
    color: Annotated[str | None, _validated_as(HexColor)] = None

    @field_validator("name", "color", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null; leave the field out to keep it")
        return value


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
