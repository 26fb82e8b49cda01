from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from taskapi.core import migrations
from taskapi.core.config import Settings
from taskapi.models import Base
from tests.support.backends import DatabaseFactory

TABLES = {"users", "tasks", "categories", "task_categories", "refresh_tokens", "task_counters"}
TASK_INDEXES = {
    "ix_tasks_deleted_at": ["deleted_at"],
    "ix_tasks_user_id_created_at": ["user_id", "created_at", "id"],
    "ix_tasks_user_id_deleted_at": ["user_id", "deleted_at"],
    "ix_tasks_user_id_due_date": ["user_id", "due_date"],
    "ix_tasks_user_id_priority": ["user_id", "priority"],
    "ix_tasks_user_id_status": ["user_id", "status"],
    "ix_tasks_user_id_title": ["user_id", "title"],
    "ix_tasks_user_id_updated_at": ["user_id", "updated_at"],
}


def _schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    tables = set(inspector.get_table_names()) - {"alembic_version"}
    return {
        "tables": tables,
        "task_indexes": {
            index["name"]: index["column_names"] for index in inspector.get_indexes("tasks")
        }
        if "tasks" in tables
        else {},
        "uniques": {
            table: sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table))
            for table in tables
        },
        "foreign_keys": {
            (table, fk["referred_table"], fk["options"].get("ondelete"))
            for table in tables
            for fk in inspector.get_foreign_keys(table)
        },
        "diff": compare_metadata(MigrationContext.configure(connection), Base.metadata),
    }


async def _enum_types(engine: Any) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT typname FROM pg_type WHERE typtype = 'e'"))
        return {row[0] for row in rows}


async def test_upgrade_downgrade_upgrade(new_database_url: DatabaseFactory) -> None:
    url = await new_database_url()
    settings = Settings(_env_file=None, app_env="test", database_url=url)
    engine = create_async_engine(url)
    try:
        await migrations.upgrade_async(settings)
        async with engine.connect() as connection:
            schema = await connection.run_sync(_schema)
        assert schema["tables"] == TABLES
        assert schema["task_indexes"] == TASK_INDEXES
        assert schema["uniques"]["users"] == [
            ("email",),
            ("email_verification_token_hash",),
            ("password_reset_token_hash",),
        ]
        assert schema["uniques"]["categories"] == [("user_id", "name")]
        assert schema["uniques"]["refresh_tokens"] == [("token_hash",)]
        assert schema["foreign_keys"] == {
            ("tasks", "users", "CASCADE"),
            ("categories", "users", "CASCADE"),
            ("refresh_tokens", "users", "CASCADE"),
            ("task_categories", "tasks", "CASCADE"),
            ("task_categories", "categories", "CASCADE"),
            ("task_counters", "users", "CASCADE"),
        }
        assert schema["diff"] == [], "the migration and the ORM models disagree"
        if engine.dialect.name == "postgresql":
            assert await _enum_types(engine) == {"task_status", "task_priority"}

        await engine.dispose()
        await migrations.downgrade_async(settings, "base")
        async with engine.connect() as connection:
            assert (await connection.run_sync(_schema))["tables"] == set()
        assert await _enum_types(engine) == set()

        await engine.dispose()
        await migrations.upgrade_async(settings)
        async with engine.connect() as connection:
            again = await connection.run_sync(_schema)
        assert again["tables"] == TABLES
        assert again["diff"] == []
    finally:
        await engine.dispose()
