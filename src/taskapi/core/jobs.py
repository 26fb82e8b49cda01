"""Durable background jobs: what a feature declares and how it queues work.

A job is a row of the `jobs` table in the app's own database. A feature declares a
`JobKind` (name, payload model, handler, retry policy) and calls `enqueue` inside the
transaction of the change that causes the work, so the two commit together or not at all:
a process killed right after the commit loses nothing, and a rolled-back change leaves no
job behind. Workers (core/worker.py) run the handlers; docs/worker.md says why this is a
table of our own rather than a queue library, and how to operate it.

A handler gets the job's own transaction (`JobContext.session`): whatever it writes there
commits together with the job's completion, exactly once. What it does outside the database
(an email, an HTTP call) happens at least once: a worker that dies after the effect and
before the commit leaves the job to be run again after its lease.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import JSON, CheckConstraint, Index, String, Text, delete, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.core.config import Settings
from taskapi.core.email import EmailBackend
from taskapi.core.models import Base, UUIDPrimaryKey, new_id, utcnow

MAX_KIND_LENGTH = 100
MAX_KEY_LENGTH = 200


class JobStatus(StrEnum):
    QUEUED = "queued"
    """Waiting for `run_at`, or due."""
    RUNNING = "running"
    """Claimed by a worker until `locked_until`; after that any worker may take it again."""
    FAILED = "failed"
    """Out of attempts (or refused for good): kept for operators, never run again."""


class Job(UUIDPrimaryKey, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at"),
        CheckConstraint("status IN ('queued', 'running', 'failed')", name="status"),
    )

    kind: Mapped[str] = mapped_column(String(MAX_KIND_LENGTH))
    unique_key: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH), unique=True)
    """At most one job per key: enqueueing with a key replaces the job that has it."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    """Claims so far, the current one included."""
    run_at: Mapped[datetime]
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


PayloadT = TypeVar("PayloadT", bound=BaseModel)


class PermanentJobError(Exception):
    """Raised by a handler for a job that can never succeed: no retry, failed at once."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed job runs again: after `delays[n]` following its (n+1)-th failure, with
    up to `jitter` of the delay added or taken away so retries of many jobs spread out.
    After `len(delays) + 1` attempts, or once `max_age` has passed since the job was
    queued, it fails for good."""

    delays: tuple[timedelta, ...]
    max_age: timedelta | None = None
    jitter: float = 0.1

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def next_run(self, *, attempts: int, created_at: datetime, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed attempts; None when it is over."""
        if attempts >= self.max_attempts:
            return None
        delay = self.delays[attempts - 1].total_seconds()
        delay *= 1 + random.uniform(-self.jitter, self.jitter)  # noqa: S311 (spread, not secrecy)
        when = now + timedelta(seconds=delay)
        if self.max_age is not None and when > created_at + self.max_age:
            return None
        return when


DEFAULT_RETRY = RetryPolicy(
    delays=(
        timedelta(seconds=10),
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
    )
)
DEFAULT_TIMEOUT = timedelta(seconds=60)
LEASE_MARGIN = timedelta(seconds=30)
"""A lease outlasts the handler's timeout by this much: time to commit the completion."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler works with. `session` is the job's own transaction: the worker
    commits it together with the job's completion, or rolls it back if the job fails or
    its lease was lost meanwhile. Do slow I/O before the first write: on SQLite the first
    write takes the database's one write lock until the commit."""

    session: AsyncSession
    settings: Settings
    email: EmailBackend
    now: datetime
    job_id: uuid.UUID
    attempt: int


Handler = Callable[[JobContext, PayloadT], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class JobKind(Generic[PayloadT]):
    """One kind of job. `name` is stored in each row: never rename a kind that may have
    jobs queued. `every` makes the kind periodic: the worker keeps exactly one job of it,
    run again `every` after each run (after a final failure too), with an empty payload."""

    name: str
    payload: type[PayloadT]
    handler: Handler[PayloadT]
    retry: RetryPolicy = DEFAULT_RETRY
    timeout: timedelta = DEFAULT_TIMEOUT
    lease: timedelta | None = None
    """How long a claim lasts before another worker may take the job; default timeout +
    LEASE_MARGIN. Must exceed the timeout."""
    every: timedelta | None = None

    @property
    def lease_duration(self) -> timedelta:
        return self.lease if self.lease is not None else self.timeout + LEASE_MARGIN


class NoPayload(BaseModel):
    """The payload of a periodic job."""


@dataclass(frozen=True)
class JobKinds:
    """The kinds a worker runs, by name. A worker claims only these, so during a rolling
    deploy an old worker leaves a new kind to the new workers."""

    kinds: Mapping[str, JobKind[Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, *kinds: JobKind[Any]) -> JobKinds:
        by_name: dict[str, JobKind[Any]] = {}
        for kind in kinds:
            if kind.name in by_name:
                raise ValueError(f"two job kinds are named {kind.name!r}")
            if len(kind.name) > MAX_KIND_LENGTH:
                raise ValueError(f"job kind name {kind.name!r} is too long")
            if kind.lease_duration <= kind.timeout:
                raise ValueError(f"job kind {kind.name!r}: the lease must outlast the timeout")
            by_name[kind.name] = kind
        return cls(by_name)

    def __getitem__(self, name: str) -> JobKind[Any]:
        return self.kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self.kinds

    @property
    def names(self) -> list[str]:
        return sorted(self.kinds)

    @property
    def periodic(self) -> list[JobKind[Any]]:
        return [kind for kind in self.kinds.values() if kind.every is not None]


def _unique_key(kind: JobKind[Any], key: str) -> str:
    unique_key = f"{kind.name}:{key}"
    if len(unique_key) > MAX_KEY_LENGTH:
        raise ValueError(f"job key {unique_key!r} is longer than {MAX_KEY_LENGTH} characters")
    return unique_key


_INSERT_JOB = insert(Job)


async def enqueue(
    session: AsyncSession,
    kind: JobKind[PayloadT],
    payload: PayloadT,
    *,
    run_at: datetime | None = None,
    key: str | None = None,
) -> None:
    """Queue a job in the session's transaction: it exists once that commits, not before.

    `run_at` (default: now) is the earliest time it runs. With a `key`, the job replaces
    the kind's job with the same key, whatever state that one is in: its payload and time
    become these, its attempts start over. A worker running the replaced job at that moment
    finds its claim gone when it completes, so its database writes roll back.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id(),
        "kind": kind.name,
        "payload": payload.model_dump(mode="json"),
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "run_at": run_at or now,
        "locked_by": None,
        "locked_until": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }
    if key is None:
        # Core, on the connection, with a statement built once: a job may come with every
        # change (a webhook delivery), and the ORM's bulk insert path costs more.
        await (await session.connection()).execute(_INSERT_JOB, values)
        return
    values["unique_key"] = _unique_key(kind, key)
    replaced = {name: value for name, value in values.items() if name != "id"}
    await session.execute(
        upsert(session, values).on_conflict_do_update(index_elements=["unique_key"], set_=replaced)
    )


async def cancel(session: AsyncSession, kind: JobKind[Any], key: str) -> None:
    """Drop the kind's job with this key, if there is one, in the session's transaction.
    A worker running it at that moment finds its claim gone: its database writes roll
    back (an email it already handed to the mail server stays sent)."""
    await session.execute(delete(Job).where(Job.unique_key == _unique_key(kind, key)))


def upsert(session: AsyncSession, values: Mapping[str, Any]) -> postgresql.Insert | sqlite.Insert:
    """INSERT INTO jobs in the session's dialect, for its ON CONFLICT clause."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(Job).values(dict(values))
    return sqlite.insert(Job).values(dict(values))


FAILED_JOB_RETENTION = timedelta(days=14)


async def prune_failed_jobs(context: JobContext, _payload: NoPayload) -> None:
    """Failed jobs stay for operators to look into, for a while."""
    await context.session.execute(
        delete(Job).where(
            Job.status == JobStatus.FAILED.value,
            Job.updated_at < context.now - FAILED_JOB_RETENTION,
        )
    )


PRUNE_FAILED_JOBS = JobKind(
    name="jobs.prune_failed",
    payload=NoPayload,
    handler=prune_failed_jobs,
    every=timedelta(hours=1),
)
