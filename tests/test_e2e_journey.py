"""One user's whole journey through the real endpoints, in one test.

The app runs its embedded job worker, as `taskapi serve` does; the verification token is
read from the console email backend's log, as a developer would.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from taskapi.categories.models import Category
from taskapi.tasks.models import Task, task_categories
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.jobs import wait_until

API = "/api/v1"
EMAIL = "grace.hopper@example.com"
PASSWORD = "C0bol!Compiler"


def _verification_token(logs: list[MutableMapping[str, Any]]) -> str:
    [email] = [entry for entry in logs if entry["event"] == "email" and entry["to"] == EMAIL]
    href: str = email["link"]
    link = urlsplit(href)
    assert (link.scheme, link.netloc, link.path) == ("http", "frontend.test", "/verify-email")
    [token] = parse_qs(link.query)["token"]
    return token


async def test_register_verify_login_then_tasks_and_categories(
    app_factory: AppFactory, make_settings: SettingsFactory, session: AsyncSession
) -> None:
    app = await app_factory(make_settings(worker_enabled=True))
    async with make_client(app) as client:
        await _journey(client, session)


async def _journey(client: httpx.AsyncClient, session: AsyncSession) -> None:
    # Register: signed in at once, but inactive until the email is verified.
    with capture_logs() as logs:
        registered = await client.post(
            f"{API}/auth/register",
            json={"email": EMAIL, "password": PASSWORD, "full_name": "Grace Hopper"},
        )
        await wait_until(
            lambda: any(entry["event"] == "email" for entry in logs), "the verification email"
        )
    assert registered.status_code == 201, registered.text
    assert registered.json()["user"]["is_active"] is False
    early = await client.get(
        f"{API}/tasks",
        headers={"Authorization": f"Bearer {registered.json()['access_token']}"},
    )
    assert early.status_code == 403
    assert early.json()["code"] == "email_not_verified"

    # Verify with the token from the emailed link.
    verified = await client.post(
        f"{API}/auth/verify-email", json={"token": _verification_token(logs)}
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["is_active"] is True

    # Log in.
    login = await client.post(f"{API}/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["token_type"] == "bearer"
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

    # Create a task, without a category.
    created = await client.post(
        f"{API}/tasks", json={"title": "Write the compiler", "priority": "high"}, headers=auth
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["status"], task["version"], task["categories"]) == ("pending", 1, [])

    # Create a category.
    made = await client.post(f"{API}/categories", json={"name": "Work"}, headers=auth)
    assert made.status_code == 201, made.text
    category = made.json()
    assert category["color"] == "#6366F1"

    # Assign it.
    assigned = await client.post(
        f"{API}/tasks/{task['id']}/categories/{category['id']}", headers=auth
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["categories"] == [category]
    assert assigned.json()["version"] == 2

    # The list shows the task with its category.
    listed = await client.get(f"{API}/tasks", headers=auth)
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    [item] = listed.json()["items"]
    assert (item["id"], item["categories"]) == (task["id"], [category])

    # Update the status, with the version last read.
    updated = await client.patch(
        f"{API}/tasks/{task['id']}", json={"status": "in_progress", "version": 2}, headers=auth
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 3

    # Get it: the new status, its category still there.
    fetched = await client.get(f"{API}/tasks/{task['id']}", headers=auth)
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "in_progress"
    assert fetched.json()["categories"] == [category]
    assert fetched.headers["etag"] == '"3"'

    # Delete the task: gone from the list.
    deleted = await client.delete(f"{API}/tasks/{task['id']}", headers=auth)
    assert deleted.status_code == 204
    after = await client.get(f"{API}/tasks", headers=auth)
    assert after.json() == {
        "items": [],
        "total": 0,
        "page": 1,
        "limit": 20,
        "pages": 0,
        "next_cursor": None,
    }
    assert (await client.get(f"{API}/tasks/{task['id']}", headers=auth)).status_code == 404

    # Delete the category.
    dropped = await client.delete(f"{API}/categories/{category['id']}", headers=auth)
    assert dropped.status_code == 204
    assert (await client.get(f"{API}/categories", headers=auth)).json() == {
        "items": [],
        "total": 0,
    }

    # What the database keeps: the task soft-deleted, no category and no link.
    stored_task = await session.get(Task, uuid.UUID(task["id"]))
    assert stored_task is not None
    assert stored_task.deleted_at is not None
    assert stored_task.status == "in_progress"
    assert (await session.scalars(select(Category))).all() == []
    assert (await session.execute(select(task_categories))).all() == []
    await session.commit()
