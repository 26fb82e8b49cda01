"""The OpenAPI document as generated clients read it.

Everything here is derived from the routes and their metadata, so a new route is documented
the same way without being listed anywhere: operationIds are the route functions' names;
every error is the problem+json it is, with the `code` values it can carry; validation is
400 (not FastAPI's 422); the answers middleware gives before any route runs (413, 429, 503)
and the headers every answer carries are on every operation they can happen to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security.base import SecurityBase
from pydantic import BaseModel
from starlette.routing import BaseRoute

from taskapi.core.errors import (
    PROBLEM_JSON,
    AppError,
    Conflict,
    EmailNotVerified,
    InvalidJson,
    NotFound,
    PayloadTooLarge,
    PreconditionRequired,
    Problem,
    RateLimited,
    RequestHeadersTooLarge,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)

COMPONENT_REF = "#/components/schemas/{model}"
PROBLEM_CODES = "x-problem-codes"

# The error a bare status in `problem_responses` stands for: what the layers every route
# shares answer with (validation, authentication, a missing resource, ...).
_ERROR_OF_STATUS: dict[int, type[AppError]] = {
    error.status: error
    for error in (
        ValidationFailed,
        Unauthorized,
        EmailNotVerified,
        NotFound,
        Conflict,
        PreconditionRequired,
        PayloadTooLarge,
        RateLimited,
        ServiceUnavailable,
    )
}

# Models the routes refer to by $ref (problem variants, request bodies documented by hand):
# their schemas join the document's components.
_component_models: dict[str, type[BaseModel]] = {"Problem": Problem}


def component_ref(model: type[BaseModel]) -> dict[str, str]:
    """A $ref to the model's schema, which the document then carries in its components."""
    known = _component_models.setdefault(model.__name__, model)
    if known is not model:
        raise RuntimeError(f"two models are named {model.__name__}: {known} and {model}")
    return {"$ref": COMPONENT_REF.format(model=model.__name__)}


def request_body(schemas: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """`openapi_extra=` for a route that reads its body itself: one named schema per media
    type, so generators make one model each."""
    content = {
        media_type: {"schema": component_ref(model)} for media_type, model in schemas.items()
    }
    return {"requestBody": {"required": True, "content": content}}


def problem_responses(*errors: int | type[AppError]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the errors it can answer with, as problem+json.

    An error class documents its own `code` and problem schema (for example 409
    `version_conflict` with `current_version`); a bare status stands for the error every
    route shares for it (400 `validation_error`, 401 `not_authenticated`, 404 `not_found`...).
    """
    by_status: dict[int, list[type[AppError]]] = {}
    for error in errors:
        error_class = _ERROR_OF_STATUS[error] if isinstance(error, int) else error
        by_status.setdefault(error_class.status, []).append(error_class)
    return {status: _problem_response(status, classes) for status, classes in by_status.items()}


def _problem_response(status: int, errors: Iterable[type[AppError]]) -> dict[str, Any]:
    errors = list(errors)
    codes = sorted({error.code for error in errors})
    models = {error.problem_model for error in errors}
    # Answers of one shape share its schema; different shapes share what all problems have.
    model = models.pop() if len(models) == 1 else Problem
    return {
        "description": _describe(status, codes),
        "content": {PROBLEM_JSON: {"schema": component_ref(model)}},
        PROBLEM_CODES: codes,
    }


def _describe(status: int, codes: Iterable[str]) -> str:
    return f"{HTTPStatus(status).phrase}. `code`: " + ", ".join(f"`{code}`" for code in codes)


def operation_id(route: APIRoute) -> str:
    """The route function's name: short, readable and stable as generated method names."""
    return route.name


def check_operation_ids(schema: dict[str, Any]) -> None:
    """Two routes with one function name would give generated clients one method for both
    (FastAPI only warns)."""
    names = Counter(operation["operationId"] for _path, operation in _operations(schema))
    clashes = sorted(name for name, count in names.items() if count > 1)
    if clashes:
        raise RuntimeError(f"route function names must be unique (operationIds): {clashes}")


@dataclass(frozen=True)
class Authentication:
    """How routes authenticate, for the document: the dependencies that do it (reading the
    Authorization header themselves, not through FastAPI's scheme dependencies, which
    FastAPI would solve on every request) and the schemes any of them accepts. A route that
    depends on one of them, at any depth, requires each scheme, with the scopes its
    `Security(...)` declarations give on the way down, as FastAPI documents a scheme
    dependency."""

    dependencies: frozenset[Callable[..., Any]]
    schemes: tuple[SecurityBase, ...]


def install_openapi(app: FastAPI, *, authentication: Authentication | None = None) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
                contact=app.contact,
                license_info=app.license_info,
            )
            check_operation_ids(schema)
            if authentication is not None:
                _document_authentication(schema, app.routes, authentication)
            _add_component_models(schema)
            _document_validation_as_400(schema)
            _document_answers_from_below_the_routes(schema)
            _document_shared_headers(schema)
            _drop_null_from_optional_parameters(schema)
            _declare_public_operations(schema)
            _scopes_on_oauth2_only(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _operations(schema: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for path, path_item in schema.get("paths", {}).items():
        for operation in path_item.values():
            yield path, operation


def _document_authentication(
    schema: dict[str, Any], routes: Sequence[BaseRoute], authentication: Authentication
) -> None:
    schemes = {
        scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
        for scheme in authentication.schemes
    }
    documented = False
    for context in iter_route_contexts(routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        scopes = _scopes_where_authenticated(route.dependant, authentication.dependencies)
        if scopes is None:
            continue
        for method in route.methods or ():
            operation = schema["paths"][context.path_format][method.lower()]
            operation["security"] = [{name: list(scopes)} for name in schemes]
            documented = True
    if documented:
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(schemes)


def _scopes_where_authenticated(
    dependant: Dependant, authenticating: frozenset[Callable[..., Any]]
) -> list[str] | None:
    """The scopes declared down to each authenticating dependency of the tree, merged in
    order; None when nothing in it authenticates."""
    scopes: list[str] | None = None
    pending = [dependant]
    while pending:
        current = pending.pop()
        if current.call in authenticating:
            scopes = scopes if scopes is not None else []
            for scope in [*(current.parent_oauth_scopes or []), *(current.own_oauth_scopes or [])]:
                if scope not in scopes:
                    scopes.append(scope)
        pending.extend(reversed(current.dependencies))
    return scopes


def _add_component_models(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _component_models.items():
        definition = model.model_json_schema(ref_template=COMPONENT_REF)
        components.update(definition.pop("$defs", {}))
        components[name] = definition
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)


def _document_validation_as_400(schema: dict[str, Any]) -> None:
    """FastAPI documents its own 422; this API answers validation errors with a 400 problem
    (`invalid_json` when a JSON body does not parse). A 422 a route documents itself (a
    problem) stays."""
    for _path, operation in _operations(schema):
        responses = operation.get("responses", {})
        if "HTTPValidationError" in str(responses.get("422", "")):
            del responses["422"]
            responses.setdefault("400", _problem_response(400, [ValidationFailed]))
        takes_json = "application/json" in operation.get("requestBody", {}).get("content", {})
        if "400" in responses and takes_json:
            _add_code(responses["400"], 400, InvalidJson.code)


def _add_code(response: dict[str, Any], status: int, code: str) -> None:
    """One more code on a documented problem, whose body has only what all problems have."""
    codes = response.setdefault(PROBLEM_CODES, [])
    if code in codes:
        return
    response[PROBLEM_CODES] = sorted([*codes, code])
    response["content"][PROBLEM_JSON]["schema"] = component_ref(Problem)
    response["description"] = _describe(status, response[PROBLEM_CODES])


_RATE_LIMIT_HEADERS: dict[str, Any] = {
    "RateLimit-Limit": {
        "description": "Requests allowed per window (when rate limiting is on).",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in this window (when rate limiting is on).",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the window resets (when rate limiting is on).",
        "schema": {"type": "integer"},
    },
}
_RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
_LOCATION: dict[str, Any] = {
    "Location": {"description": "The path of what was created.", "schema": {"type": "string"}}
}
_REQUEST_ID: dict[str, Any] = {
    "X-Request-ID": {
        "description": "This request's id (the one sent, if valid); quote it when reporting.",
        "schema": {"type": "string"},
    }
}


def _document_answers_from_below_the_routes(schema: dict[str, Any]) -> None:
    """Answers no route handler writes, so no route's `responses=` lists them:

    - 429: the rate limiter refuses before routing, on every API path;
    - 413: the body limit refuses before parsing, on every operation that takes a body;
    - 503: the database cannot be reached (core/db.py); every API operation uses it;
    - 431: the request middleware refuses oversized headers on every path.
    """
    for path, operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        for status, response in problem_responses(RequestHeadersTooLarge).items():
            responses.setdefault(str(status), response)
        if not path.startswith("/api/"):
            continue
        errors = [RateLimited, ServiceUnavailable]
        if "requestBody" in operation:
            errors.append(PayloadTooLarge)
        for status, response in problem_responses(*errors).items():
            responses.setdefault(str(status), response)
        responses["429"].setdefault("headers", {}).update(_RETRY_AFTER)
        responses["503"].setdefault("headers", {}).update(_RETRY_AFTER)


def _document_shared_headers(schema: dict[str, Any]) -> None:
    """Every answer carries X-Request-ID, every API answer the RateLimit-* headers (by $ref
    to components/headers); a header a route documents without a schema is a string."""
    shared = {**_REQUEST_ID, **_RATE_LIMIT_HEADERS, **_RETRY_AFTER, **_LOCATION}
    schema["components"]["headers"] = shared
    for path, operation in _operations(schema):
        for response in operation.get("responses", {}).values():
            headers = response.setdefault("headers", {})
            names = [*_REQUEST_ID, *(_RATE_LIMIT_HEADERS if path.startswith("/api/") else ())]
            headers.update({name: {"$ref": f"#/components/headers/{name}"} for name in names})
            for name, header in headers.items():
                if name in shared:
                    headers[name] = {"$ref": f"#/components/headers/{name}"}
                else:
                    header.setdefault("schema", {"type": "string"})


def _drop_null_from_optional_parameters(schema: dict[str, Any]) -> None:
    """An optional parameter is left out, never sent as null: `str | None` is a string."""
    for _path, operation in _operations(schema):
        for parameter in operation.get("parameters", []):
            parameter_schema = parameter.get("schema", {})
            variants = parameter_schema.get("anyOf", [])
            non_null = [variant for variant in variants if variant != {"type": "null"}]
            if len(non_null) == 1 and len(variants) == 2:
                del parameter_schema["anyOf"]
                parameter_schema.update(non_null[0])


def _declare_public_operations(schema: dict[str, Any]) -> None:
    """An operation without a security requirement says so, for linters and generators."""
    for _path, operation in _operations(schema):
        operation.setdefault("security", [])


def _scopes_on_oauth2_only(schema: dict[str, Any]) -> None:
    """Only an OAuth2 scheme's requirement may list scopes (OpenAPI linters warn on others):
    another scheme's requirement lists none, and the operation's description names them."""
    schemes = schema.get("components", {}).get("securitySchemes", {})
    for _path, operation in _operations(schema):
        needed: set[str] = set()
        for requirement in operation.get("security", []):
            for name, scopes in requirement.items():
                if scopes and schemes.get(name, {}).get("type") != "oauth2":
                    needed.update(scopes)
                    requirement[name] = []
        if needed:
            scopes_text = "Scope needed: " + ", ".join(f"`{scope}`" for scope in sorted(needed))
            description = operation.get("description")
            operation["description"] = (
                f"{description}\n\n{scopes_text}." if description else f"{scopes_text}."
            )
