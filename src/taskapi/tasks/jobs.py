"""Task jobs, with the queries they run: emptying the trash of tasks deleted more than
TRASH_RETENTION_DAYS ago."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import structlog
from sqlalchemy import delete
from sqlalchemy.engine import CursorResult

from taskapi.core.jobs import JobContext, JobKind, NoPayload
from taskapi.tasks.models import Task

log = structlog.get_logger("taskapi.tasks.jobs")


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

JOB_KINDS = (PURGE_TRASH,)
