"""Refresh-token families as rows: the sessions a user can list and revoke.

Each family (one login) gets its client's user agent and IP, when it was last refreshed,
when it expires and when it was revoked. Existing families are built from their tokens: a
family is live when one of its tokens is; its user agent and IP were never recorded.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
INSERT INTO refresh_token_families
    (id, user_id, user_agent, ip, created_at, last_used_at, expires_at, revoked_at)
SELECT family_id, user_id, NULL, NULL, MIN(created_at), MAX(created_at), MAX(expires_at),
       CASE WHEN COUNT(*) = COUNT(revoked_at) THEN MAX(revoked_at) END
FROM refresh_tokens
GROUP BY family_id, user_id
"""


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "refresh_token_families",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("last_used_at", nullable=False),
        _timestamp("expires_at", nullable=False),
        _timestamp("revoked_at"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_refresh_token_families_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token_families")),
    )
    op.create_index(
        "ix_refresh_token_families_user_id_revoked_at",
        "refresh_token_families",
        ["user_id", "revoked_at"],
    )
    op.execute(BACKFILL)
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.create_foreign_key(
            op.f("fk_refresh_tokens_family_id_refresh_token_families"),
            "refresh_token_families",
            ["family_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_constraint(
            op.f("fk_refresh_tokens_family_id_refresh_token_families"), type_="foreignkey"
        )
    op.drop_table("refresh_token_families")
