"""Task jobs, with the queries they run: reminder emails, and emptying the trash of tasks
deleted more than TRASH_RETENTION_DAYS ago.

A task has at most one reminder job, keyed by its id: the service arms it (queues it for
`remind_at`, replacing the one before) and cancels it in the transaction that changes the
task. When it runs, it sends only if the task still wants that reminder.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.models import User
from taskapi.core.email import message_id
from taskapi.core.jobs import JobContext, JobKind, NoPayload, RetryPolicy, cancel, enqueue
from taskapi.tasks.emails import reminder_email
from taskapi.tasks.models import Task, TaskStatus

log = structlog.get_logger("taskapi.tasks.jobs")


class Reminder(BaseModel):
    task_id: uuid.UUID
    remind_at: datetime


async def send_reminder(context: JobContext, job: Reminder) -> None:
    task = (
        await context.session.execute(
            select(
                Task.title,
                Task.due_date,
                Task.remind_at,
                Task.status,
                Task.deleted_at,
                User.email,
                User.full_name,
            )
            .join(User, User.id == Task.user_id)
            .where(Task.id == job.task_id)
        )
    ).one_or_none()
    if (
        task is None
        or task.deleted_at is not None
        or task.status is TaskStatus.COMPLETED
        or task.remind_at != job.remind_at
    ):
        log.info("reminder_skipped", task_id=str(job.task_id), reason="no longer wanted")
        return
    await context.email.send(
        reminder_email(
            settings=context.settings,
            to=task.email,
            full_name=task.full_name,
            task_id=job.task_id,
            title=task.title,
            due_date=task.due_date,
            message_id=message_id(context.job_id, context.settings.smtp_from),
        )
    )


REMINDER = JobKind(
    name="tasks.reminder",
    payload=Reminder,
    handler=send_reminder,
    # A reminder hours late is noise: give up after six.
    retry=RetryPolicy(
        delays=(
            timedelta(seconds=10),
            timedelta(minutes=1),
            timedelta(minutes=5),
            timedelta(minutes=30),
            timedelta(hours=1),
        ),
        max_age=timedelta(hours=6),
    ),
)


async def arm_reminder(session: AsyncSession, *, task_id: uuid.UUID, remind_at: datetime) -> None:
    """Queue the task's reminder for `remind_at`, replacing any it had."""
    await enqueue(
        session,
        REMINDER,
        Reminder(task_id=task_id, remind_at=remind_at),
        run_at=remind_at,
        key=str(task_id),
    )


async def cancel_reminder(session: AsyncSession, *, task_id: uuid.UUID) -> None:
    await cancel(session, REMINDER, str(task_id))


async def purge_trash(context: JobContext, _payload: NoPayload) -> None:
    """Delete for good every task deleted more than the retention ago (its category links
    go with it)."""
    deleted_before = context.now - timedelta(days=context.settings.trash_retention_days)
    purged = await context.session.execute(
        delete(Task)
        .where(Task.deleted_at < deleted_before)
        .execution_options(synchronize_session=False)
    )
    count = cast(CursorResult[Any], purged).rowcount
    if count:
        log.info("trash_purged", tasks=count)


PURGE_TRASH = JobKind(
    name="tasks.purge_trash",
    payload=NoPayload,
    handler=purge_trash,
    every=timedelta(hours=1),
)

JOB_KINDS = (REMINDER, PURGE_TRASH)
