"""HEAD wherever GET works (RFC 9110 §9.3.2): the same status and headers, no body; and
`Allow` names HEAD with GET, on every 405."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.categories.models import Category
from taskapi.tasks.models import Task
from taskapi.webhooks.delivery import new_secret
from taskapi.webhooks.models import Webhook
from tests.support.factories import SignedIn

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
UNDOCUMENTED_GETS = ("/docs", "/redoc", "/openapi.json")
COMPARED_HEADERS = ("content-type", "content-length", "etag", "cache-control", "allow")


async def _concrete_paths(session: AsyncSession, alice: SignedIn) -> dict[str, str]:
    """Each path parameter filled with one of alice's rows."""
    category = Category(user_id=alice.user.id, name="Errands", color="#6366F1")
    task = Task(user_id=alice.user.id, title="A task", categories=[category])
    webhook = Webhook(
        user_id=alice.user.id,
        url="https://hooks.example.com/taskapi",
        events=["task.created"],
        secret=new_secret(),
    )
    session.add_all([category, task, webhook])
    await session.commit()
    return {
        "{task_id}": str(task.id),
        "{category_id}": str(category.id),
        "{webhook_id}": str(webhook.id),
    }


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace(name, value)
    return template


async def test_every_get_route_answers_head_alike_without_a_body(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    values = await _concrete_paths(session, alice)
    documented = app.openapi()["paths"]
    paths = [path for path, item in documented.items() if "get" in item]
    assert "/health" in paths
    assert "/health/live" in paths
    assert "/api/v1/tasks/{task_id}" in paths
    for template in [*paths, *UNDOCUMENTED_GETS]:
        path = _fill(template, values)
        got = await client.get(path, headers=alice.headers)
        head = await client.head(path, headers=alice.headers)
        assert got.status_code == 200, (path, got.text)
        assert head.status_code == 200, path
        assert head.content == b"", path
        for name in COMPARED_HEADERS:
            assert head.headers.get(name) == got.headers.get(name), (path, name)
        assert "x-request-id" in head.headers


async def test_head_of_a_missing_resource_is_its_get_status(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    path = "/api/v1/tasks/01937a4e-9d3c-7f52-8b68-4d2e3c5f6a71"
    assert (await client.get(path, headers=alice.headers)).status_code == 404
    head = await client.head(path, headers=alice.headers)
    assert head.status_code == 404
    assert head.content == b""
    unauthenticated = await client.head("/api/v1/tasks")
    assert unauthenticated.status_code == 401
    assert unauthenticated.content == b""


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/health", "GET, HEAD"),
        ("/health/live", "GET, HEAD"),
        ("/api/v1/tasks", "GET, HEAD, POST"),
        ("/api/v1/tasks/01937a4e-9d3c-7f52-8b68-4d2e3c5f6a71", "GET, HEAD, PATCH, DELETE"),
        ("/api/v1/users/me", "GET, HEAD, PATCH, DELETE"),
        ("/api/v1/auth/login", "POST"),
        (
            "/api/v1/tasks/01937a4e-9d3c-7f52-8b68-4d2e3c5f6a71/categories/"
            "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f60",
            "POST, DELETE",
        ),
    ],
)
async def test_a_method_a_path_lacks_is_405_with_allow(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    for method in ALL_METHODS:
        if method in allowed.split(", "):
            continue
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allowed, (method, path)
        if method != "HEAD":
            assert response.json()["code"] == "method_not_allowed"
