"""Tasks: completed_at, remind_at, recurrence and next_occurrence_id (DESIGN §7.5), and
ix_tasks_trash, a partial index on deleted_at that serves the hourly purge of the trash.

Completed tasks get their last change as completion time. On SQLite a foreign key can only
be added by copying the table (Alembic's batch mode), which loses what SQLite's reflection
does not return: the triggers of 0002 and the expression index of 0003 are read before and
made again after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("next_occurrence_id", "recurrence", "remind_at", "completed_at")
INDEXES = ("ix_tasks_trash", "ix_tasks_next_occurrence_id", "ix_tasks_user_id_completed_at")
NOT_DELETED = sa.text("deleted_at IS NOT NULL")


@contextmanager
def _tasks_table() -> Iterator[BatchOperations]:
    """Changes to `tasks`: in place on PostgreSQL; on SQLite by a copy, after which the
    triggers and indexes it lost (other than this migration's own) are made again."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        with op.batch_alter_table("tasks") as batch:
            yield batch
        return
    schema = sa.text(
        "SELECT type, name, sql FROM sqlite_master "
        "WHERE tbl_name = 'tasks' AND type IN ('trigger', 'index') AND sql IS NOT NULL"
    )
    before = [row for row in bind.execute(schema) if row.name not in INDEXES]
    with warnings.catch_warnings():
        # The copy cannot read the expression index; it is made again below.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        with op.batch_alter_table("tasks", recreate="always") as batch:
            yield batch
    kept = {row.name for row in bind.execute(schema)}
    for row in before:
        if row.name not in kept:
            op.execute(row.sql)


def upgrade() -> None:
    with _tasks_table() as tasks:
        tasks.add_column(sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))
        tasks.add_column(sa.Column("remind_at", sa.DateTime(timezone=True), nullable=True))
        tasks.add_column(sa.Column("recurrence", sa.String(length=500), nullable=True))
        tasks.add_column(sa.Column("next_occurrence_id", sa.Uuid(), nullable=True))
        tasks.create_foreign_key(
            op.f("fk_tasks_next_occurrence_id_tasks"),
            "tasks",
            ["next_occurrence_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index("ix_tasks_user_id_completed_at", "tasks", ["user_id", "completed_at"])
    op.create_index(op.f("ix_tasks_next_occurrence_id"), "tasks", ["next_occurrence_id"])
    op.create_index(
        "ix_tasks_trash",
        "tasks",
        ["deleted_at"],
        postgresql_where=NOT_DELETED,
        sqlite_where=NOT_DELETED,
    )
    op.execute("UPDATE tasks SET completed_at = updated_at WHERE status = 'completed'")


def downgrade() -> None:
    for index in INDEXES:
        op.drop_index(index, table_name="tasks")
    with _tasks_table() as tasks:
        tasks.drop_constraint(op.f("fk_tasks_next_occurrence_id_tasks"), type_="foreignkey")
        for column in COLUMNS:
            tasks.drop_column(column)
