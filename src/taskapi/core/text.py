"""Free text as every supported database can store it.

PostgreSQL's text type cannot hold the NUL character: a title with one would fail in the
driver as a 500. It is refused at the edge as a 400 instead, on SQLite too so both backends
behave alike, and the OpenAPI document says so with a pattern.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

NO_NUL_PATTERN = "^[^\\x00]*$"


class NoNul:
    """`Annotated[str, ..., NoNul()]`: refuse NUL characters and document it."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_refuse_nul, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = NO_NUL_PATTERN
        return json_schema


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("Must not contain NUL characters")
    return value
