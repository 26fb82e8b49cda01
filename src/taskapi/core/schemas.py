"""Helpers for how request bodies are documented in the OpenAPI document."""

from __future__ import annotations

from pydantic.config import JsonDict


def document_not_nullable(schema: JsonDict) -> None:
    """`json_schema_extra` for a field that may be absent but not null: Python needs
    `X | None = None` to tell "absent" apart, the document must not offer `null`."""
    branches = schema.pop("anyOf", [])
    if isinstance(branches, list):
        schema.update(next(b for b in branches if isinstance(b, dict) and b.get("type") != "null"))
    schema.pop("default", None)
