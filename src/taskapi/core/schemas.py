"""What request bodies share: the one rule for PATCH fields that may be left out but not
sent as null, and its schema half for parameters that need only that (an optional header
or body that is never `null`)."""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BeforeValidator, Field
from pydantic.config import JsonDict

T = TypeVar("T")

NOT_NULL_MESSAGE = "May be left out but not null"


def _refuse_null(value: object) -> object:
    if value is None:
        raise ValueError(NOT_NULL_MESSAGE)
    return value


def document_not_nullable(schema: JsonDict) -> None:
    """The document shows the field as `T` alone: no `null` branch, no default."""
    branches = schema.pop("anyOf", [])
    if isinstance(branches, list):
        schema.update(next(b for b in branches if isinstance(b, dict) and b.get("type") != "null"))
    schema.pop("default", None)


Omittable = Annotated[
    T | None,
    BeforeValidator(_refuse_null),
    Field(json_schema_extra=document_not_nullable),
]
"""A PATCH field that may be left out (it stays as it is) but not sent as null:
`name: Omittable[Name] = None`. Python needs the None default to tell "absent" apart
(`model_dump(exclude_unset=True)`); the client is never offered `null`."""
