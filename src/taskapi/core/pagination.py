"""Pagination: page numbers (`page`/`limit`, with a total) or keyset cursors (`cursor`).

A cursor is an opaque token naming the last row a client saw; the next page starts after it
with an index seek, so page 4,000 costs what page 1 does. Page numbers stay for clients that
want totals and random access.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskapi.core.errors import BadRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

T = TypeVar("T")
ItemT = TypeVar("ItemT")


class SortOrder(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


MAX_CURSOR_LENGTH = 1024


class InvalidCursor(BadRequest):
    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__(
            "The cursor is not one this list gave out; start again without it, with the same "
            "filters and sort."
        )


class PageParams(BaseModel):
    page: int = Field(1, ge=1, description="1-based page number; past the last page is empty.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page, 1-100.")
    cursor: str | None = Field(
        None,
        max_length=MAX_CURSOR_LENGTH,
        description=(
            "`next_cursor` of the previous page: the next page by keyset, fast at any depth, "
            "without total/page/pages. Not combined with `page`."
        ),
    )

    @model_validator(mode="after")
    def _cursor_or_page(self) -> PageParams:
        if self.cursor is not None and self.page != 1:
            raise ValueError("Send either page or cursor, not both")
        return self

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page as a service returns it; the router sends it through a `PageRead` model.
    `total` and `page` are None for a page reached by cursor."""

    items: Sequence[T]
    total: int | None
    page: int | None
    limit: int
    next_cursor: str | None

    @property
    def pages(self) -> int | None:
        return None if self.total is None else -(-self.total // self.limit)


class PageRead(BaseModel, Generic[ItemT]):
    model_config = ConfigDict(from_attributes=True)

    items: list[ItemT]
    total: int | None = Field(
        description="Items matching the query, on all pages; null on a page reached by cursor."
    )
    page: int | None = Field(description="null on a page reached by cursor.")
    limit: int
    pages: int | None = Field(
        description="ceil(total / limit); 0 when nothing matches; null on a page by cursor."
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position inside a cursor; InvalidCursor (400) for anything we did not make."""
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as error:
        raise InvalidCursor from error
    if not isinstance(position, dict):
        raise InvalidCursor
    return position
