from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from structlog.testing import capture_logs

from taskapi.core.errors import Conflict
from tests.support.apps import make_client
from tests.support.problems import assert_problem

probe = APIRouter(prefix="/api/v1/probe")


class ProbeBody(BaseModel):
    name: str = Field(min_length=3)
    count: int


@probe.post("")
async def echo(body: ProbeBody) -> ProbeBody:
    return body


@probe.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@probe.get("/conflict")
async def conflict() -> None:
    raise Conflict("Already there.", extra={"current_version": 3})


@pytest.fixture
async def probe_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    app.include_router(probe)
    async with make_client(app) as http:
        yield http


async def test_validation_error_is_400_with_field_errors(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post("/api/v1/probe", json={"name": "ab", "count": "many"})
    body = assert_problem(response, 400, "validation_error")
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"name", "count"}


async def test_missing_body_is_400(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post("/api/v1/probe")
    body = assert_problem(response, 400, "validation_error")
    assert body["errors"] == [{"field": "body", "message": "Field required"}]


async def test_malformed_json_is_400(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/api/v1/probe", content=b'{"name": "abc",', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "invalid_json")


async def test_unknown_fields_are_ignored(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/api/v1/probe", json={"name": "abc", "count": 1, "admin": True}
    )
    assert response.status_code == 200
    assert response.json() == {"name": "abc", "count": 1}


async def test_unknown_route_is_404(probe_client: httpx.AsyncClient) -> None:
    assert_problem(await probe_client.get("/api/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_405_with_allow(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.delete("/api/v1/probe")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_domain_error_carries_extra_members(probe_client: httpx.AsyncClient) -> None:
    body = assert_problem(await probe_client.get("/api/v1/probe/conflict"), 409, "conflict")
    assert body["current_version"] == 3
    assert body["detail"] == "Already there."


async def test_unexpected_error_is_generic_500_with_headers(
    probe_client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        response = await probe_client.get("/api/v1/probe/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert body["detail"] == "An unexpected error occurred."
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    errors = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["exc_info"] is True
    assert errors[0]["path"] == "/api/v1/probe/boom"


async def test_openapi_documents_problem_json_and_400_not_422(
    probe_client: httpx.AsyncClient,
) -> None:
    document = (await probe_client.get("/openapi.json")).json()
    responses = document["paths"]["/api/v1/probe"]["post"]["responses"]
    assert "422" not in responses
    assert responses["400"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "request_id"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/api/v1/tasks", "GET, HEAD, POST"),
        ("PUT", "/api/v1/tasks/0193a1b2-0000-7000-8000-000000000000", "GET, HEAD, PATCH, DELETE"),
        ("POST", "/api/v1/users/me", "GET, HEAD, PATCH, DELETE"),
        ("GET", "/api/v1/auth/login", "POST"),
    ],
)
async def test_405_allow_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    """Found by Schemathesis: Starlette named only the first route at the path."""
    response = await client.request(method, path)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


async def test_openapi_documents_the_answers_middleware_gives(client: httpx.AsyncClient) -> None:
    """429 (rate limiter) and 503 (database) on every API operation, 413 (body limit) on
    every one that takes a body, 431 (header cap) on every operation at all, each as
    problem+json; only 431 on /health/live."""
    schema = (await client.get("/openapi.json")).json()
    problem = {"$ref": "#/components/schemas/Problem"}
    operations = [
        (path, operation)
        for path, item in schema["paths"].items()
        if path.startswith("/api/")
        for operation in item.values()
    ]
    assert len(operations) >= 15
    for path, operation in operations:
        responses = operation["responses"]
        expected = {"429", "503", "431"} | ({"413"} if "requestBody" in operation else set())
        assert expected <= set(responses), path
        for status in expected:
            assert responses[status]["content"]["application/problem+json"]["schema"] == problem
        assert "Retry-After" in responses["429"]["headers"]
        if "requestBody" not in operation:
            assert "413" not in responses, path
    live = schema["paths"]["/health/live"]["get"]["responses"]
    assert set(live) == {"200", "431"}
    assert live["431"]["x-problem-codes"] == ["request_headers_too_large"]
