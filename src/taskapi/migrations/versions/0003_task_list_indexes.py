"""Task indexes as the list queries use them: one for the title sort, none that serve nothing.

Lists sort titles by lower(title) in byte order, so `ix_tasks_user_id_title` (the raw
title) served no query: the sort read all of a user's tasks and sorted them. It becomes
`ix_tasks_user_id_title_sort` on the sort key itself (and the id, the tie-breaker), read in
order by the first page and by every cursor. `ix_tasks_deleted_at` (deleted_at alone)
matched no query either: every task query names its user. EXPLAIN on PostgreSQL, per list
shape: tests/tasks/test_query_plans.py.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _title_sort_key() -> sa.TextClause:
    """As taskapi.tasks.models.TitleSortKey compiles: byte order on both backends."""
    if op.get_bind().dialect.name == "postgresql":
        return sa.text('lower(title) COLLATE "C"')
    return sa.text("lower(title)")


def upgrade() -> None:
    op.drop_index("ix_tasks_deleted_at", table_name="tasks")
    op.drop_index("ix_tasks_user_id_title", table_name="tasks")
    op.create_index("ix_tasks_user_id_title_sort", "tasks", ["user_id", _title_sort_key(), "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_user_id_title_sort", table_name="tasks")
    op.create_index("ix_tasks_user_id_title", "tasks", ["user_id", "title"])
    op.create_index("ix_tasks_deleted_at", "tasks", ["deleted_at"])
