"""The task tables: tasks (soft-deleted, versioned), their category links, and the per-user
count of live tasks that triggers keep."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Enum, ForeignKey, Index, String, Table, Text, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

# Imported at run time: the relationship below needs the class mapped before first use.
from taskapi.categories.models import Category
from taskapi.core.models import Base, Timestamps, UUIDPrimaryKey
from taskapi.tasks.recurrence import MAX_RULE_LENGTH


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


# Declared in ordinal order: PostgreSQL sorts a native enum by declaration. (A comment, not
# a docstring: the docstring would be the schema's description in the OpenAPI document.)
class TaskPriority(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def _enum_values(enum_class: type[enum.StrEnum]) -> list[str]:
    return [member.value for member in enum_class]


task_status_type = Enum(TaskStatus, name="task_status", values_callable=_enum_values)
task_priority_type = Enum(TaskPriority, name="task_priority", values_callable=_enum_values)

task_categories = Table(
    "task_categories",
    Base.metadata,
    Column("task_id", ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "category_id", ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
)


class Task(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_user_id_deleted_at", "user_id", "deleted_at"),
        Index("ix_tasks_user_id_status", "user_id", "status"),
        Index("ix_tasks_user_id_priority", "user_id", "priority"),
        Index("ix_tasks_user_id_due_date", "user_id", "due_date"),
        Index("ix_tasks_user_id_created_at", "user_id", "created_at", "id"),
        Index("ix_tasks_user_id_updated_at", "user_id", "updated_at"),
        Index("ix_tasks_user_id_completed_at", "user_id", "completed_at"),
        Index(
            "ix_tasks_trash",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[TaskStatus] = mapped_column(
        task_status_type, default=TaskStatus.PENDING, server_default=TaskStatus.PENDING.value
    )
    priority: Mapped[TaskPriority] = mapped_column(
        task_priority_type, default=TaskPriority.MEDIUM, server_default=TaskPriority.MEDIUM.value
    )
    due_date: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    """When it went to the trash; ix_tasks_trash serves the purge."""
    completed_at: Mapped[datetime | None]
    """Set when the status becomes completed, cleared when it leaves it."""
    remind_at: Mapped[datetime | None]
    """When the owner gets a reminder email (a job keyed by the task, tasks/jobs.py)."""
    recurrence: Mapped[str | None] = mapped_column(String(MAX_RULE_LENGTH))
    """An RRULE (tasks/recurrence.py), canonical spelling; needs a due date."""
    next_occurrence_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), index=True
    )
    """The task completing this recurring one created: the next in its series."""
    version: Mapped[int] = mapped_column(default=1, server_default=text("1"))

    categories: Mapped[list[Category]] = relationship(
        secondary=task_categories, lazy="raise", order_by="Category.name"
    )


class TitleSortKey(FunctionElement[str]):
    """A title as task lists sort it: lower-cased, in byte order, so the order is the same
    on both backends and in every locale. SQLite compares bytes already; PostgreSQL needs
    COLLATE "C", a collation SQLite does not know. The list query and the index that serves
    it use this one expression, so they cannot drift apart."""

    type = String()
    name = "title_sort_key"
    inherit_cache = True


@compiles(TitleSortKey)
def _title_sort_key(element: TitleSortKey, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(TitleSortKey, "postgresql")
def _title_sort_key_postgresql(element: TitleSortKey, compiler: SQLCompiler, **kw: Any) -> str:
    return f'lower({compiler.process(element.clauses, **kw)}) COLLATE "C"'


Index("ix_tasks_user_id_title_sort", Task.user_id, TitleSortKey(Task.title), Task.id)


class TaskCounter(Base):
    """Live (not deleted) tasks per user, kept exact by database triggers (migration 0002),
    so the unfiltered list answers its total without counting every row."""

    __tablename__ = "task_counters"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    live_tasks: Mapped[int] = mapped_column(default=0, server_default=text("0"))
