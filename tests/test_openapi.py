"""The OpenAPI document as a client generator reads it: valid, named, typed, honest.

Every rule here holds for any route, so a route added later is checked without being named.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Security
from fastapi.security import HTTPBearer, OAuth2PasswordBearer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from taskapi.app import OPENAPI_SNAPSHOT, REGENERATE_OPENAPI
from taskapi.core.openapi import Authentication, install_openapi, operation_id

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENT_URI = "urn:taskapi:openapi"
METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}
# Words of how the server is built, not of what a client sees.
INTERNAL_WORDS = ("postgresql", "sqlite", "sqlalchemy", "native enum", "index seek", "trigger")


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_the_committed_snapshot_is_the_served_document(document: dict[str, Any]) -> None:
    snapshot = json.loads((REPO_ROOT / OPENAPI_SNAPSHOT).read_text())
    assert snapshot == document, (
        f"{OPENAPI_SNAPSHOT} differs from the served document; regenerate it with "
        f"`{REGENERATE_OPENAPI}` and commit the change"
    )


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_every_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    """Each example against the schema beside it, $refs resolved in the document."""
    resource = DRAFT202012.create_resource(document)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    checked = 0

    def walk(node: Any, pointer: str) -> None:
        nonlocal checked
        if isinstance(node, dict):
            if "schema" in node and "example" in node:
                check(f"{pointer}/schema", node["example"])
            if "example" in node and ("properties" in node or "type" in node):
                check(pointer, node["example"])
            for key, value in node.items():
                if key != "example":
                    walk(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{pointer}/{index}")

    def check(pointer: str, example: Any) -> None:
        nonlocal checked
        validator = Draft202012Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry)
        errors = [error.message for error in validator.iter_errors(example)]
        assert errors == [], pointer
        checked += 1

    walk(document, "")
    assert checked >= 15


def test_operation_ids_are_the_route_function_names(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _path, _method, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert {"login", "login_form", "update_task", "list_tasks", "assign_category"} <= set(ids)
    assert all(len(name) <= 40 and "api_v1" not in name for name in ids), ids


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_two_routes_with_one_function_name_stop_the_document() -> None:
    router = APIRouter()

    def twice() -> None:
        """Named like the route below: one generated method for two operations."""

    router.add_api_route("/one", twice)
    router.add_api_route("/two", twice, methods=["POST"])
    app = FastAPI(generate_unique_id_function=operation_id)
    app.include_router(router)
    install_openapi(app)
    with pytest.raises(RuntimeError, match=r"unique.*\['twice'\]"):
        app.openapi()


async def _authenticate() -> None:
    """Stands for the app's caller dependency."""


async def _scoped(_caller: Annotated[None, Depends(_authenticate)]) -> None:
    """A scoped user on top of the caller."""


async def read_things(_user: Annotated[None, Security(_scoped, scopes=["things:read"])]) -> None:
    """Needs a scope."""


async def whoami(_caller: Annotated[None, Depends(_authenticate)]) -> None:
    """Needs a caller, no scope."""


async def ping() -> None:
    """Public."""


def test_routes_that_authenticate_require_every_scheme_with_their_scopes() -> None:
    """The authenticating dependencies read the header themselves; the document still says
    what each route requires, at any depth of its dependencies, and nothing for the rest."""
    app = FastAPI(generate_unique_id_function=operation_id)
    app.add_api_route("/things", read_things)
    app.add_api_route("/me", whoami)
    app.add_api_route("/ping", ping)
    oauth2 = OAuth2PasswordBearer(tokenUrl="/token", scopes={"things:read": "Read things"})
    bearer_scheme = HTTPBearer(scheme_name="Bearer")
    install_openapi(
        app,
        authentication=Authentication(
            dependencies=frozenset({_authenticate}), schemes=(oauth2, bearer_scheme)
        ),
    )
    paths = app.openapi()["paths"]
    assert paths["/things"]["get"]["security"] == [
        {"OAuth2PasswordBearer": ["things:read"]},
        {"Bearer": []},
    ]
    assert "`things:read`" in paths["/things"]["get"]["description"]
    assert paths["/me"]["get"]["security"] == [{"OAuth2PasswordBearer": []}, {"Bearer": []}]
    assert paths["/ping"]["get"]["security"] == []
    schemes = app.openapi()["components"]["securitySchemes"]
    assert schemes["Bearer"] == {"type": "http", "scheme": "bearer"}
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/token"


def test_login_has_one_named_schema_per_media_type(document: dict[str, Any]) -> None:
    auth = "/api/v1/auth"
    login = document["paths"][f"{auth}/login"]["post"]["requestBody"]["content"]
    token = document["paths"][f"{auth}/token"]["post"]["requestBody"]["content"]
    assert login == {"application/json": {"schema": {"$ref": "#/components/schemas/LoginRequest"}}}
    assert token == {
        "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/LoginForm"}}
    }
    scheme = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == f"{auth}/token"


def test_swagger_authorize_takes_a_personal_access_token(document: dict[str, Any]) -> None:
    """Authorize in /docs offers a bearer field beside the password form: a `tapi_` token
    pasted there is sent as `Authorization: Bearer tapi_…`, which every scoped route takes."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerToken"]["type"] == "http"
    assert schemes["BearerToken"]["scheme"] == "bearer"
    assert set(schemes["OAuth2PasswordBearer"]["flows"]["password"]["scopes"]) == {
        "tasks:read",
        "tasks:write",
        "categories:read",
        "categories:write",
        "webhooks:manage",
    }


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def problem_schema_of(response: dict[str, Any]) -> str:
    return str(response["content"]["application/problem+json"]["schema"]["$ref"]).rsplit("/")[-1]


def test_problem_variants_type_their_members(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "current_version" in schemas["VersionConflictProblem"]["required"]
    assert "locked_until" in schemas["AccountLockedProblem"]["required"]
    assert "errors" in schemas["ValidationProblem"]["required"]
    problem_errors = schemas["Problem"]["properties"]["errors"]
    assert "default" not in problem_errors
    assert problem_errors["type"] == "array"
    paths = document["paths"]
    assert problem_schema_of(paths["/api/v1/tasks/{task_id}"]["patch"]["responses"]["409"]) == (
        "VersionConflictProblem"
    )
    assert problem_schema_of(paths["/api/v1/auth/login"]["post"]["responses"]["403"]) == (
        "AccountLockedProblem"
    )
    assert problem_schema_of(paths["/api/v1/tasks/{task_id}"]["get"]["responses"]["400"]) == (
        "ValidationProblem"
    )
    assert "required_scope" in schemas["InsufficientScopeProblem"]["required"]
    assert problem_schema_of(paths["/api/v1/auth/sessions"]["get"]["responses"]["403"]) == (
        "InsufficientScopeProblem"
    )


def test_every_problem_response_lists_its_codes(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if "application/problem+json" not in response.get("content", {}):
                continue
            codes = response["x-problem-codes"]
            assert codes, (method, path, status)
            assert all(f"`{code}`" in response["description"] for code in codes)
    update = document["paths"]["/api/v1/tasks/{task_id}"]["patch"]["responses"]
    assert update["409"]["x-problem-codes"] == ["version_conflict"]
    assert update["400"]["x-problem-codes"] == [
        "bad_request",
        "invalid_json",
        "invalid_recurrence",
        "validation_error",
    ]
    assert update["403"]["x-problem-codes"] == ["email_not_verified", "insufficient_scope"]
    created = document["paths"]["/api/v1/tasks"]["post"]["responses"]
    assert created["409"]["x-problem-codes"] == ["idempotency_key_in_progress"]
    assert created["422"]["x-problem-codes"] == ["idempotency_key_reused"]


def test_every_response_header_has_a_schema(document: dict[str, Any]) -> None:
    shared = document["components"]["headers"]
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            assert "X-Request-ID" in headers, (method, path, status)
            for name, header in headers.items():
                header = resolve(document, header["$ref"]) if "$ref" in header else header
                assert "schema" in header, (method, path, status, name)
            if path.startswith("/api/"):
                assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(headers)
    assert {"Retry-After", "Location"} <= set(shared)
    created = document["paths"]["/api/v1/tasks"]["post"]["responses"]["201"]["headers"]
    assert {"ETag", "Location"} <= set(created)


def test_optional_parameters_are_never_null(document: dict[str, Any]) -> None:
    """A client leaves an optional parameter out; typing it nullable makes generated
    clients send (or crash on) None. If-Match was the first such."""
    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            assert "null" not in json.dumps(parameter["schema"]), (method, path, parameter["name"])
    update = document["paths"]["/api/v1/tasks/{task_id}"]["patch"]
    (if_match,) = [p for p in update["parameters"] if p["name"] == "If-Match"]
    assert if_match["schema"]["type"] == "string"


def test_public_operations_declare_no_security(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        assert "security" in operation, (method, path)
    assert document["paths"]["/api/v1/auth/register"]["post"]["security"] == []
    assert document["paths"]["/health/live"]["get"]["security"] == []
    listed = document["paths"]["/api/v1/tasks"]["get"]
    assert listed["security"] == [{"OAuth2PasswordBearer": ["tasks:read"]}, {"BearerToken": []}]
    assert listed["description"].endswith("Scope needed: `tasks:read`.")
    assert document["paths"]["/api/v1/auth/sessions"]["get"]["security"] == [
        {"OAuth2PasswordBearer": []},
        {"BearerToken": []},
    ]


def test_info_names_servers_contact_and_license(document: dict[str, Any]) -> None:
    assert document["servers"]
    assert document["info"]["contact"]["url"]
    assert document["info"]["license"]["identifier"] == "MIT"


def test_task_page_example_shows_the_cursor(document: dict[str, Any]) -> None:
    example = document["components"]["schemas"]["TaskPage"]["example"]
    assert set(document["components"]["schemas"]["TaskPage"]["required"]) <= set(example)
    assert isinstance(example["next_cursor"], str)


def test_descriptions_say_nothing_about_the_implementation(document: dict[str, Any]) -> None:
    def texts(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("description", "summary") and isinstance(value, str):
                    yield value
                else:
                    yield from texts(value)
        elif isinstance(node, list):
            for value in node:
                yield from texts(value)

    leaks = [text for text in texts(document) if any(w in text.lower() for w in INTERNAL_WORDS)]
    assert leaks == []
