"""The Python client openapi-python-client generates from openapi.json, used as-is against a
real `taskapi serve`: it imports, and a consumer's journey through it types every answer.

Runs on the PostgreSQL pass (one real server is enough; the SQLite pass covers the same
document). The generator's version is pinned here, as consumers would pin theirs.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from taskapi.app import OPENAPI_SNAPSHOT
from tests.support.backends import (
    DatabaseFactory,
    database_env,
)
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.processes import ServeFactory, find_program, free_port
from tests.support.smtp import SmtpServer, link_in

pytestmark = pytest.mark.needs_services(
    "postgresql",
    "uvx",
    reason="generates the client with uvx and runs it against a real server on PostgreSQL",
)

GENERATOR = "openapi-python-client==0.29.0"
PACKAGE = "taskapi_client"
GENERATE_TIMEOUT_SECONDS = 300
EMAIL_WAIT_STEPS = 200


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Generates the client from the committed snapshot (test_openapi.py holds it equal to
    the served document) and makes it importable."""
    root = Path(__file__).resolve().parents[2]
    output = tmp_path_factory.mktemp("client")
    uvx = find_program("uvx")
    assert uvx is not None
    run = subprocess.run(  # noqa: S603  # fixed arguments: the pinned generator, our files
        [
            uvx,
            "--from",
            GENERATOR,
            "openapi-python-client",
            "generate",
            "--path",
            str(root / OPENAPI_SNAPSHOT),
            "--output-path",
            str(output / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT_SECONDS,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(output))
    try:
        yield PACKAGE
    finally:
        sys.path.remove(str(output))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


async def first_message(smtp_server: SmtpServer) -> EmailMessage:
    """The server sends account emails after answering; wait for the first one."""
    for _ in range(EMAIL_WAIT_STEPS):
        if smtp_server.messages:
            return smtp_server.only_message()
        await asyncio.sleep(0.1)
    raise AssertionError("no email arrived")


def module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


async def test_a_journey_through_the_generated_client(
    client_package: str,
    serve: ServeFactory,
    new_database_url: DatabaseFactory,
    smtp_server: SmtpServer,
) -> None:
    server = serve(
        {
            "APP_ENV": "production",
            **database_env(await new_database_url()),
            "REDIS_URL": "",
            "EMAIL_BACKEND": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_server.port),
            "SMTP_STARTTLS": "false",
            "SMTP_FROM": "taskapi <no-reply@taskapi.test>",
            "FRONTEND_URL": "http://frontend.test",
            "WORKERS": "1",
        }
    )
    api: dict[str, Any] = {
        name: module(client_package, f"api.{name}")
        for name in ("auth", "tasks", "categories", "users")
    }
    for tag, operations in {
        "auth": (
            "register",
            "verify_email",
            "login",
            "login_form",
            "create_token",
            "list_sessions",
        ),
        "tasks": ("create_task", "update_task", "list_tasks"),
        "categories": ("create_category", "assign_category"),
        "users": ("read_me",),
    }.items():
        for operation in operations:
            api[operation] = module(client_package, f"api.{tag}.{operation}")
    models = module(client_package, "models")
    client_module = module(client_package, "client")
    anonymous = client_module.Client(base_url=server.base_url, raise_on_unexpected_status=True)
    email = f"client-{uuid.uuid4().hex[:12]}@example.com"

    registered = await api["register"].asyncio_detailed(
        client=anonymous,
        body=models.RegisterRequest(email=email, password=DEFAULT_PASSWORD, full_name="Ada"),
    )
    assert registered.status_code == 201
    assert isinstance(registered.parsed, models.TokenResponse)
    assert registered.parsed.user.email == email

    token = link_in(await first_message(smtp_server), "verify-email")
    verified = await api["verify_email"].asyncio_detailed(
        client=anonymous, body=models.VerifyEmailRequest(token=token)
    )
    assert verified.status_code == 200
    assert verified.parsed.is_active is True

    by_form = await api["login_form"].asyncio_detailed(
        client=anonymous, body=models.LoginForm(username=email, password=DEFAULT_PASSWORD)
    )
    assert isinstance(by_form.parsed, models.TokenResponse)
    signed_in = await api["login"].asyncio_detailed(
        client=anonymous, body=models.LoginRequest(email=email, password=DEFAULT_PASSWORD)
    )
    assert isinstance(signed_in.parsed, models.TokenResponse)
    user = client_module.AuthenticatedClient(
        base_url=server.base_url, token=signed_in.parsed.access_token
    )
    me = await api["read_me"].asyncio(client=user)
    assert me.email == email

    created = [
        await api["create_task"].asyncio_detailed(
            client=user, body=models.TaskCreate(title=f"Task number {number}")
        )
        for number in range(3)
    ]
    assert [response.status_code for response in created] == [201, 201, 201]
    task = created[-1].parsed
    assert isinstance(task, models.TaskRead)
    assert created[-1].headers["etag"] == '"1"'
    assert created[-1].headers["location"] == f"/api/v1/tasks/{task.id}"

    changed = await api["update_task"].asyncio_detailed(
        client=user,
        task_id=task.id,
        body=models.TaskUpdate(status=models.TaskStatus.IN_PROGRESS),
        if_match='"1"',
    )
    assert changed.status_code == 200
    assert changed.parsed.version == 2
    stale = await api["update_task"].asyncio_detailed(
        client=user, task_id=task.id, body=models.TaskUpdate(title="Too late", version=1)
    )
    assert stale.status_code == 409
    assert isinstance(stale.parsed, models.VersionConflictProblem)
    assert stale.parsed.code == "version_conflict"
    assert stale.parsed.current_version == 2

    category = await api["create_category"].asyncio(
        client=user, body=models.CategoryCreate(name="Work")
    )
    assert isinstance(category, models.CategoryRead)
    assigned = await api["assign_category"].asyncio_detailed(
        client=user, task_id=task.id, category_id=category.id
    )
    assert assigned.status_code == 200
    assert [assigned_category.name for assigned_category in assigned.parsed.categories] == ["Work"]
    assert assigned.headers["etag"] == '"3"'

    first = await api["list_tasks"].asyncio(client=user, limit=2)
    assert isinstance(first, models.TaskPage)
    assert first.total == 3
    assert isinstance(first.next_cursor, str)
    second = await api["list_tasks"].asyncio(client=user, limit=2, cursor=first.next_cursor)
    assert isinstance(second, models.TaskPage)
    assert second.next_cursor is None
    assert second.total is None
    seen = [item.id for item in [*first.items, *second.items]]
    assert sorted(map(str, seen)) == sorted(str(response.parsed.id) for response in created)

    invalid = await api["create_task"].asyncio_detailed(
        client=user, body=models.TaskCreate(title="no")
    )
    assert invalid.status_code == 400
    assert [error.field for error in invalid.parsed.errors] == ["title"]

    retry_key = str(uuid.uuid4())
    first_try, retried = [
        await api["create_task"].asyncio_detailed(
            client=user, body=models.TaskCreate(title="Sent twice"), idempotency_key=retry_key
        )
        for _attempt in range(2)
    ]
    assert (first_try.status_code, retried.status_code) == (201, 201)
    assert retried.parsed.id == first_try.parsed.id
    assert retried.headers["idempotent-replayed"] == "true"

    sessions = await api["list_sessions"].asyncio(client=user)
    assert isinstance(sessions, models.SessionList)
    # Newest first: this login, the form login, the registration.
    assert [item.current for item in sessions.items] == [True, False, False]
    created_token = await api["create_token"].asyncio_detailed(
        client=user,
        body=models.PersonalTokenCreate(
            name="Read-only script", scopes=[models.Scope("tasks:read")]
        ),
    )
    assert created_token.status_code == 201
    assert isinstance(created_token.parsed, models.PersonalTokenCreated)
    assert created_token.parsed.token.startswith("tapi_")
    script = client_module.AuthenticatedClient(
        base_url=server.base_url, token=created_token.parsed.token
    )
    read = await api["list_tasks"].asyncio(client=script, limit=10)
    assert isinstance(read, models.TaskPage)
    assert read.total == 4
    refused = await api["create_task"].asyncio_detailed(
        client=script, body=models.TaskCreate(title="Not with this token")
    )
    assert refused.status_code == 403
    assert refused.parsed.code == "insufficient_scope"
    assert refused.parsed.additional_properties["required_scope"] == "tasks:write"
    not_an_account = await api["list_sessions"].asyncio_detailed(client=script)
    assert not_an_account.status_code == 403
    assert isinstance(not_an_account.parsed, models.InsufficientScopeProblem)
    assert not_an_account.parsed.required_scope is None

    wrong = models.LoginRequest(email=email, password="Wr0ng!Passw0rd")
    for _attempt in range(5):
        await api["login"].asyncio_detailed(client=anonymous, body=wrong)
    locked = await api["login"].asyncio_detailed(client=anonymous, body=wrong)
    assert locked.status_code == 403
    assert isinstance(locked.parsed, models.AccountLockedProblem)
    assert isinstance(locked.parsed.locked_until, datetime)
