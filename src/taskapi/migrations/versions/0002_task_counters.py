"""Per-user count of live tasks, kept by triggers, for the unfiltered list's total.

Counting a heavy user's tasks on every GET /tasks scanned all of them (100,000 index
entries for the first page). Triggers keep the count exact for every write path: the API,
bulk loads, manual SQL. Existing tasks are counted once here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL_FUNCTION = """
CREATE FUNCTION task_counters_track() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.deleted_at IS NULL
       AND (TG_OP = 'DELETE' OR NEW.deleted_at IS NOT NULL) THEN
        UPDATE task_counters SET live_tasks = live_tasks - 1 WHERE user_id = OLD.user_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.deleted_at IS NULL
       AND (TG_OP = 'INSERT' OR OLD.deleted_at IS NOT NULL) THEN
        INSERT INTO task_counters (user_id, live_tasks) VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET live_tasks = task_counters.live_tasks + 1;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""

# Deferred to commit: the counter row is locked only while the transaction commits, not
# from the INSERT until then, so one user's concurrent creates do not queue on it.
POSTGRESQL_TRIGGER_BINDING = """
CREATE CONSTRAINT TRIGGER task_counters_track
AFTER INSERT OR DELETE OR UPDATE OF deleted_at ON tasks
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION task_counters_track()
"""

SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER task_counters_insert AFTER INSERT ON tasks WHEN NEW.deleted_at IS NULL
    BEGIN
        INSERT INTO task_counters (user_id, live_tasks) VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET live_tasks = live_tasks + 1;
    END
    """,
    """
    CREATE TRIGGER task_counters_delete AFTER DELETE ON tasks WHEN OLD.deleted_at IS NULL
    BEGIN
        UPDATE task_counters SET live_tasks = live_tasks - 1 WHERE user_id = OLD.user_id;
    END
    """,
    """
    CREATE TRIGGER task_counters_soft_delete AFTER UPDATE OF deleted_at ON tasks
    WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL
    BEGIN
        UPDATE task_counters SET live_tasks = live_tasks - 1 WHERE user_id = OLD.user_id;
    END
    """,
    """
    CREATE TRIGGER task_counters_restore AFTER UPDATE OF deleted_at ON tasks
    WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL
    BEGIN
        INSERT INTO task_counters (user_id, live_tasks) VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET live_tasks = live_tasks + 1;
    END
    """,
]


def upgrade() -> None:
    op.create_table(
        "task_counters",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("live_tasks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_task_counters_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_task_counters")),
    )
    op.execute(
        "INSERT INTO task_counters (user_id, live_tasks) "
        "SELECT user_id, count(*) FROM tasks WHERE deleted_at IS NULL GROUP BY user_id"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(POSTGRESQL_TRIGGER_BINDING)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER task_counters_track ON tasks")
        op.execute("DROP FUNCTION task_counters_track()")
    else:
        for name in ("insert", "delete", "soft_delete", "restore"):
            op.execute(f"DROP TRIGGER task_counters_{name}")
    op.drop_table("task_counters")
