"""Page-number pagination: the `page`/`limit` query parameters and the response envelope."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

T = TypeVar("T")
ItemT = TypeVar("ItemT")


class SortOrder(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


class PageParams(BaseModel):
    page: int = Field(1, ge=1, description="1-based page number; past the last page is empty.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page, 1-100.")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page as a service returns it; the router sends it through a `PageRead` model."""

    items: Sequence[T]
    total: int
    page: int
    limit: int

    @property
    def pages(self) -> int:
        return -(-self.total // self.limit)


class PageRead(BaseModel, Generic[ItemT]):
    model_config = ConfigDict(from_attributes=True)

    items: list[ItemT]
    total: int = Field(description="Items matching the query, on all pages.")
    page: int
    limit: int
    pages: int = Field(description="ceil(total / limit); 0 when nothing matches.")
