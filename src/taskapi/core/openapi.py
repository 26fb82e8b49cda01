"""The OpenAPI document as clients read it: every error documented as the problem+json it
is, validation as 400 (not FastAPI's 422), and the answers that middleware gives before any
route runs (413, 429, 503) listed on the operations they can happen to."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from taskapi.core.errors import PROBLEM_JSON, Problem


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each error status it can answer, as problem+json."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def install_openapi(app: FastAPI) -> None:
    app.openapi = _openapi_with_problem_schema(app)  # type: ignore[method-assign]  # FastAPI's documented override


def _openapi_with_problem_schema(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Routes refer to `Problem` by $ref; put its schema into the document's components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            definitions = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(definitions.pop("$defs", {}))
            components["Problem"] = definitions
            _document_validation_as_400(schema)
            _document_answers_from_below_the_routes(schema)
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _document_validation_as_400(schema: dict[str, Any]) -> None:
    """FastAPI documents its own 422; this API answers validation errors with a 400 problem."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", problem_responses(400)[400])


_RATE_LIMIT_HEADERS: dict[str, Any] = {
    "Retry-After": {"description": "Seconds until a request fits.", "schema": {"type": "string"}},
    "RateLimit-Limit": {"schema": {"type": "string"}},
    "RateLimit-Remaining": {"schema": {"type": "string"}},
    "RateLimit-Reset": {"schema": {"type": "string"}},
}


def _document_answers_from_below_the_routes(schema: dict[str, Any]) -> None:
    """Answers no route handler writes, so no route's `responses=` lists them:

    - 429: the rate limiter refuses before routing, on every API path;
    - 413: the body limit refuses before parsing, on every operation that takes a body;
    - 503: the database cannot be reached (core/db.py); every API operation uses it.
    """
    for path, path_item in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            statuses = [429, 503] + ([413] if "requestBody" in operation else [])
            for status, response in problem_responses(*statuses).items():
                responses.setdefault(str(status), response)
            responses["429"].setdefault("headers", _RATE_LIMIT_HEADERS)
            responses["503"].setdefault("headers", {"Retry-After": {"schema": {"type": "string"}}})
