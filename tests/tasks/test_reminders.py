"""Reminders: one email to the owner at `remind_at` naming the task, its due date and its link,
through a real SMTP server; moved when remind_at changes, cancelled by clearing it,
completing or deleting the task, armed again by a restore or a reopen."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Settings
from taskapi.core.jobs import Job
from taskapi.core.models import utcnow
from taskapi.tasks.models import Task
from tests.support.apps import AppFactory, SettingsFactory, make_client, state_of
from tests.support.factories import SignedIn, bearer_headers, create_user
from tests.support.jobs import FakeClock, run_jobs, wait_until
from tests.support.problems import assert_problem, field_errors
from tests.support.smtp import SmtpServer, parts
from tests.support.tasks import TASKS, in_days, iso


@pytest.fixture
async def mail_app(
    app_factory: AppFactory,
    make_settings: SettingsFactory,
    settings: Settings,
    smtp_server: SmtpServer,
) -> FastAPI:
    """The app with SMTP to the test's server; same secret as `settings`, so alice signs in."""
    return await app_factory(
        make_settings(
            email_backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp_server.port,
            smtp_starttls=False,
            smtp_from="taskapi <no-reply@taskapi.test>",
            jwt_secret_key=settings.secret_key,
        )
    )


@pytest.fixture
async def client(mail_app: FastAPI) -> Any:
    async with make_client(mail_app) as http:
        yield http


async def create(client: httpx.AsyncClient, signed_in: SignedIn, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        TASKS, json={"title": "Call the dentist", **fields}, headers=signed_in.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch(
    client: httpx.AsyncClient, signed_in: SignedIn, task: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    response = await client.patch(
        f"{TASKS}/{task['id']}",
        json={**fields, "version": task["version"]},
        headers=signed_in.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def at(value: str) -> FakeClock:
    return FakeClock(now=datetime.fromisoformat(value))


async def reminder_jobs(session: AsyncSession) -> list[Job]:
    jobs = list(
        await session.scalars(
            select(Job)
            .where(Job.kind == "tasks.reminder")
            .execution_options(populate_existing=True)
        )
    )
    await session.commit()
    return jobs


async def test_a_reminder_in_the_past_is_a_400(client: httpx.AsyncClient, alice: SignedIn) -> None:
    response = await client.post(
        TASKS,
        json={"title": "Too late", "remind_at": iso(utcnow() - timedelta(minutes=1))},
        headers=alice.headers,
    )
    assert_problem(response, 400, "validation_error")
    assert "remind_at" in field_errors(response)
    task = await create(client, alice)
    late = await client.patch(
        f"{TASKS}/{task['id']}",
        json={"remind_at": iso(utcnow() - timedelta(seconds=5)), "version": 1},
        headers=alice.headers,
    )
    assert_problem(late, 400, "validation_error")


async def test_the_owner_gets_one_email_at_remind_at(
    mail_app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    smtp_server: SmtpServer,
    alice: SignedIn,
) -> None:
    due = in_days(2).replace(microsecond=0)
    task = await create(client, alice, due_date=iso(due), remind_at=iso(due - timedelta(days=1)))
    [job] = await reminder_jobs(session)
    assert job.run_at == datetime.fromisoformat(task["remind_at"])
    assert job.unique_key == f"tasks.reminder:{task['id']}"

    assert await run_jobs(mail_app, clock=at(task["remind_at"])) == 1
    [(envelope, message)] = smtp_server.messages
    assert envelope.rcpt_tos == [alice.user.email]
    assert message["Subject"] == "Reminder: Call the dentist"
    text, html = parts(message)
    link = f"http://frontend.test/tasks/{task['id']}"
    assert link in text
    assert f'href="{link}"' in html
    assert "Call the dentist" in text
    assert due.strftime("%A %d %B %Y, %H:%M UTC") in text
    assert await reminder_jobs(session) == []
    assert await run_jobs(mail_app, clock=at(task["remind_at"])) == 0
    assert len(smtp_server.messages) == 1


async def test_moving_a_reminder_sends_it_at_the_new_time_only(
    mail_app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    smtp_server: SmtpServer,
    alice: SignedIn,
) -> None:
    first = in_days(1).replace(microsecond=0)
    task = await create(client, alice, remind_at=iso(first))
    moved = await patch(client, alice, task, remind_at=iso(first + timedelta(hours=3)))
    [job] = await reminder_jobs(session)
    assert job.run_at == first + timedelta(hours=3)

    assert await run_jobs(mail_app, clock=at(iso(first + timedelta(minutes=1)))) == 0
    assert smtp_server.messages == []
    assert await run_jobs(mail_app, clock=at(moved["remind_at"])) == 1
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize("how", ["cleared", "completed", "deleted"])
async def test_clearing_completing_or_deleting_cancels_the_reminder(
    mail_app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    smtp_server: SmtpServer,
    alice: SignedIn,
    how: str,
) -> None:
    remind_at = in_days(1).replace(microsecond=0)
    task = await create(client, alice, remind_at=iso(remind_at))
    if how == "cleared":
        changed = await patch(client, alice, task, remind_at=None)
        assert changed["remind_at"] is None
    elif how == "completed":
        await patch(client, alice, task, status="completed")
    else:
        deleted = await client.delete(f"{TASKS}/{task['id']}", headers=alice.headers)
        assert deleted.status_code == 204
    assert await reminder_jobs(session) == []
    assert await run_jobs(mail_app, clock=at(iso(remind_at + timedelta(minutes=1)))) == 0
    assert smtp_server.messages == []


async def test_restoring_or_reopening_arms_a_reminder_that_is_still_ahead(
    mail_app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    smtp_server: SmtpServer,
    alice: SignedIn,
) -> None:
    remind_at = in_days(1).replace(microsecond=0)
    task = await create(client, alice, remind_at=iso(remind_at))
    await client.delete(f"{TASKS}/{task['id']}", headers=alice.headers)
    restored = await client.post(f"{TASKS}/{task['id']}/restore", headers=alice.headers)
    assert restored.status_code == 200
    assert [job.run_at for job in await reminder_jobs(session)] == [remind_at]

    done = await patch(client, alice, restored.json(), status="completed")
    assert await reminder_jobs(session) == []
    await patch(client, alice, done, status="pending")
    assert [job.run_at for job in await reminder_jobs(session)] == [remind_at]

    assert await run_jobs(mail_app, clock=at(iso(remind_at))) == 1
    assert len(smtp_server.messages) == 1


async def test_a_reminder_no_longer_wanted_when_it_runs_sends_nothing(
    mail_app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    smtp_server: SmtpServer,
    alice: SignedIn,
) -> None:
    """The job re-checks the task: here the reminder time changed behind the queue's back."""
    remind_at = in_days(1).replace(microsecond=0)
    task = await create(client, alice, remind_at=iso(remind_at))
    await session.execute(
        update(Task)
        .where(Task.id == uuid.UUID(task["id"]))
        .values(remind_at=remind_at + timedelta(days=1))
    )
    await session.commit()
    assert await run_jobs(mail_app, clock=at(iso(remind_at))) == 1
    assert smtp_server.messages == []


async def test_the_next_occurrence_of_a_recurring_task_gets_its_own_reminder(
    mail_app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    alice: SignedIn,
) -> None:
    due = in_days(1).replace(microsecond=0)
    task = await create(
        client,
        alice,
        due_date=iso(due),
        remind_at=iso(due - timedelta(minutes=30)),
        recurrence="FREQ=WEEKLY",
    )
    done = await patch(client, alice, task, status="completed")
    [job] = await reminder_jobs(session)
    assert job.unique_key == f"tasks.reminder:{done['next_occurrence_id']}"
    assert job.run_at == due + timedelta(days=7, minutes=-30)


async def test_reminders_arrive_within_60_seconds_from_the_embedded_worker(
    app_factory: AppFactory,
    make_settings: SettingsFactory,
    session: AsyncSession,
    smtp_server: SmtpServer,
) -> None:
    """The real thing: a running app's worker (short poll interval), real time, real SMTP."""
    app = await app_factory(
        make_settings(
            worker_enabled=True,
            email_backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp_server.port,
            smtp_starttls=False,
        )
    )
    owner = await create_user(session, email="grace@example.com")
    headers = bearer_headers(state_of(app)["settings"], owner)
    remind_at = utcnow() + timedelta(seconds=2)
    async with make_client(app) as http:
        created = await http.post(
            TASKS, json={"title": "Stand up", "remind_at": iso(remind_at)}, headers=headers
        )
    assert created.status_code == 201, created.text
    started = time.monotonic()
    await wait_until(lambda: bool(smtp_server.messages), "the reminder", within=60)
    arrived = utcnow()
    assert remind_at <= arrived < remind_at + timedelta(seconds=60)
    assert time.monotonic() - started < 60
    [(envelope, message)] = smtp_server.messages
    assert envelope.rcpt_tos == ["grace@example.com"]
    assert message["Subject"] == "Reminder: Stand up"
