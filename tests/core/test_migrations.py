import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    String,
    Uuid,
    column,
    func,
    insert,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.app import create_app
from taskapi.core import migrations
from taskapi.core.config import Settings
from taskapi.core.models import UTCDateTime
from taskapi.core.security import hash_token
from taskapi.models import (
    Base,
    Category,
    Task,
    User,
    Webhook,
    WebhookDelivery,
    compared_by_autogenerate,
    task_categories,
)
from taskapi.tasks.models import TaskCounter
from tests.support.apps import keep_state, make_client
from tests.support.backends import DatabaseFactory, create_test_engine, database_settings

TABLES = {
    "users",
    "tasks",
    "categories",
    "task_categories",
    "refresh_tokens",
    "personal_access_tokens",
    "idempotency_keys",
    "task_counters",
    "jobs",
    "webhooks",
    "webhook_deliveries",
    "refresh_token_families",
}
TASK_INDEXES = {
    "ix_tasks_user_id_created_at": "(user_id, created_at, id)",
    "ix_tasks_user_id_deleted_at": "(user_id, deleted_at)",
    "ix_tasks_user_id_due_date": "(user_id, due_date)",
    "ix_tasks_user_id_priority": "(user_id, priority)",
    "ix_tasks_user_id_status": "(user_id, status)",
    "ix_tasks_user_id_title_sort": "(user_id, lower(title), id)",
    "ix_tasks_user_id_updated_at": "(user_id, updated_at)",
}
TASK_INDEXES_BEFORE_0003 = {
    **{name: columns for name, columns in TASK_INDEXES.items() if "title" not in name},
    "ix_tasks_deleted_at": "(deleted_at)",
    "ix_tasks_user_id_title": "(user_id, title)",
}
TASK_INDEXES_FROM_0005 = {
    "ix_tasks_user_id_completed_at": "(user_id, completed_at)",
    "ix_tasks_next_occurrence_id": "(next_occurrence_id)",
    "ix_tasks_trash": "(deleted_at) WHERE deleted_at IS NOT NULL",
}
# The title sort key is in byte order: SQLite compares bytes by default, PostgreSQL is told.
BYTE_ORDER = {"postgresql": ' COLLATE "C"', "sqlite": ""}


def _task_indexes(connection: Connection) -> dict[str, str]:
    """Each index on tasks as its key list, read from the database's own definition: SQLite's
    reflection skips expression indexes. PostgreSQL's text is normalised to SQLite's."""
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'")
        )
    else:
        rows = connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'")
        )
    indexes = {}
    for name, definition in rows:
        if definition is None or name.startswith("pk_"):
            continue  # the primary key
        keys = definition[definition.index("(") :]
        keys = re.sub(r" WHERE \((.*)\)$", r" WHERE \1", keys)
        indexes[name] = re.sub(r"\(\((\w+)\)::text\)", r"(\1)", keys)
    return indexes


def _schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    tables = set(inspector.get_table_names()) - {"alembic_version"}
    return {
        "tables": tables,
        "task_indexes": _task_indexes(connection) if "tasks" in tables else {},
        "uniques": {
            table: sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table))
            for table in tables
        },
        "foreign_keys": {
            (table, fk["referred_table"], fk["options"].get("ondelete"))
            for table in tables
            for fk in inspector.get_foreign_keys(table)
        },
        "diff": compare_metadata(
            MigrationContext.configure(
                connection, opts={"include_object": compared_by_autogenerate}
            ),
            Base.metadata,
        ),
    }


async def _enum_types(engine: Any) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT typname FROM pg_type WHERE typtype = 'e'"))
        return {row[0] for row in rows}


def _expected(indexes: dict[str, str], dialect: str) -> dict[str, str]:
    return {
        name: keys.replace("lower(title)", "lower(title)" + BYTE_ORDER[dialect])
        for name, keys in indexes.items()
    }


@pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index",
    "ignore:autogenerate skipping metadata-specified expression-based index",
)
async def test_upgrade_downgrade_upgrade(new_database_url: DatabaseFactory) -> None:
    url = await new_database_url()
    settings = Settings(_env_file=None, app_env="test", **database_settings(url))
    engine = create_test_engine(url)
    try:
        await migrations.upgrade_async(settings)
        async with engine.connect() as connection:
            schema = await connection.run_sync(_schema)
        assert schema["tables"] == TABLES
        dialect = engine.dialect.name
        assert schema["task_indexes"] == _expected(
            {**TASK_INDEXES, **TASK_INDEXES_FROM_0005}, dialect
        )
        assert schema["uniques"]["users"] == [
            ("email",),
            ("email_verification_token_hash",),
            ("password_reset_token_hash",),
        ]
        assert schema["uniques"]["categories"] == [("user_id", "name")]
        assert schema["uniques"]["refresh_tokens"] == [("token_hash",)]
        assert schema["uniques"]["jobs"] == [("unique_key",)]
        assert schema["uniques"]["personal_access_tokens"] == [("token_hash",)]
        assert schema["uniques"]["idempotency_keys"] == [("caller_id", "key")]
        assert schema["foreign_keys"] == {
            ("webhooks", "users", "CASCADE"),
            ("webhook_deliveries", "webhooks", "CASCADE"),
            ("tasks", "users", "CASCADE"),
            ("categories", "users", "CASCADE"),
            ("refresh_tokens", "users", "CASCADE"),
            ("refresh_tokens", "refresh_token_families", "CASCADE"),
            ("refresh_token_families", "users", "CASCADE"),
            ("personal_access_tokens", "users", "CASCADE"),
            ("idempotency_keys", "users", "CASCADE"),
            ("task_categories", "tasks", "CASCADE"),
            ("task_categories", "categories", "CASCADE"),
            ("task_counters", "users", "CASCADE"),
            ("tasks", "tasks", "SET NULL"),
        }
        assert schema["diff"] == [], "the migration and the ORM models disagree"
        if engine.dialect.name == "postgresql":
            assert await _enum_types(engine) == {"task_status", "task_priority"}

        await engine.dispose()
        await migrations.downgrade_async(settings, "0002")
        async with engine.connect() as connection:
            before_0003 = await connection.run_sync(_task_indexes)
        assert before_0003 == _expected(TASK_INDEXES_BEFORE_0003, dialect)

        await engine.dispose()
        await migrations.upgrade_async(settings)
        async with engine.connect() as connection:
            assert await connection.run_sync(_task_indexes) == _expected(
                {**TASK_INDEXES, **TASK_INDEXES_FROM_0005}, dialect
            )

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


async def test_0005_upgrades_a_populated_database_and_keeps_its_triggers(
    new_database_url: DatabaseFactory,
) -> None:
    """From the previous head, with users, tasks (one completed, one deleted) and a category
    link in it: the rows stay, completed tasks get their last change as completion time,
    and the task counter still counts."""
    url = await new_database_url()
    settings = Settings(_env_file=None, app_env="test", **database_settings(url))
    engine = create_test_engine(url)
    user, category = uuid.uuid4(), uuid.uuid4()
    tasks = {name: uuid.uuid4() for name in ("open", "done", "gone")}
    changed = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    try:
        await migrations.upgrade_async(settings, "0004")
        async with engine.begin() as connection:
            await connection.execute(
                insert(User).values(
                    id=user, email="ada@example.com", password_hash="x", full_name="Ada"
                )
            )
            await connection.execute(
                insert(Category).values(id=category, user_id=user, name="Home")
            )
            for name, task_id in tasks.items():
                await connection.execute(
                    insert(Task).values(
                        id=task_id,
                        user_id=user,
                        title=name,
                        status="completed" if name == "done" else "pending",
                        deleted_at=changed if name == "gone" else None,
                        updated_at=changed,
                    )
                )
            await connection.execute(
                insert(task_categories).values(task_id=tasks["done"], category_id=category)
            )
        await engine.dispose()

        await migrations.upgrade_async(settings)
        async with engine.begin() as connection:
            rows = {
                row.title: row
                for row in await connection.execute(
                    select(Task.title, Task.completed_at, Task.deleted_at, Task.recurrence)
                )
            }
            assert rows["done"].completed_at == changed
            assert rows["open"].completed_at is None
            assert rows["gone"].deleted_at == changed
            links = await connection.scalar(select(func.count()).select_from(task_categories))
            assert links == 1
            assert await _live_tasks(connection, user) == 2
            await connection.execute(insert(Task).values(user_id=user, title="new"))
        # PostgreSQL's counter trigger is deferred to commit: read the count afterwards.
        async with engine.connect() as connection:
            assert await _live_tasks(connection, user) == 3
        await engine.dispose()

        await migrations.downgrade_async(settings, "0004")
        async with engine.begin() as connection:
            await connection.execute(insert(Task).values(user_id=user, title="after"))
        async with engine.connect() as connection:
            assert await _live_tasks(connection, user) == 4
            titles = await connection.scalars(text("SELECT title FROM tasks"))
            assert sorted(titles) == ["after", "done", "gone", "new", "open"]
    finally:
        await engine.dispose()


async def _live_tasks(connection: AsyncConnection, user: uuid.UUID) -> int:
    count = await connection.scalar(
        select(TaskCounter.live_tasks).where(TaskCounter.user_id == user)
    )
    return int(count or 0)


async def test_0006_adds_webhooks_to_a_populated_database_and_takes_them_away(
    new_database_url: DatabaseFactory,
) -> None:
    """From 0005 with a user and a task: the rows stay; webhooks and deliveries can be
    written, and a downgrade removes them and nothing else."""
    url = await new_database_url()
    settings = Settings(_env_file=None, app_env="test", **database_settings(url))
    engine = create_test_engine(url)
    user, task, webhook = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        await migrations.upgrade_async(settings, "0005")
        async with engine.begin() as connection:
            await connection.execute(
                insert(User).values(
                    id=user, email="ada@example.com", password_hash="x", full_name="Ada"
                )
            )
            await connection.execute(insert(Task).values(id=task, user_id=user, title="kept"))
        await engine.dispose()

        await migrations.upgrade_async(settings)
        async with engine.begin() as connection:
            await connection.execute(
                insert(Webhook).values(
                    id=webhook,
                    user_id=user,
                    url="https://hooks.example.com/",
                    events=["task.created"],
                    enabled=True,
                    secret="whsec_x",
                )
            )
            await connection.execute(
                insert(WebhookDelivery).values(
                    webhook_id=webhook, event="task.created", body="{}", attempts=0
                )
            )
        async with engine.connect() as connection:
            assert await connection.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
            assert await connection.scalar(select(Task.title).where(Task.id == task)) == "kept"
        await engine.dispose()

        await migrations.downgrade_async(settings, "0005")
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            assert not tables & {"webhooks", "webhook_deliveries"}
            assert await connection.scalar(select(Task.title).where(Task.id == task)) == "kept"
            assert (
                await connection.scalar(select(User.email).where(User.id == user))
                == "ada@example.com"
            )
    finally:
        await engine.dispose()


# Tables as an older revision has them: only the columns that revision knows.
_users = table(
    "users",
    column("id", Uuid()),
    column("email", String()),
    column("password_hash", String()),
    column("full_name", String()),
    column("is_active", Boolean()),
    column("created_at", UTCDateTime()),
    column("updated_at", UTCDateTime()),
)
_refresh_tokens = table(
    "refresh_tokens",
    column("id", Uuid()),
    column("user_id", Uuid()),
    column("family_id", Uuid()),
    column("token_hash", String()),
    column("expires_at", UTCDateTime()),
    column("revoked_at", UTCDateTime()),
    column("created_at", UTCDateTime()),
)
_tasks = table(
    "tasks",
    column("id", Uuid()),
    column("user_id", Uuid()),
    column("title", String()),
    column("version", Integer()),
    column("created_at", UTCDateTime()),
    column("updated_at", UTCDateTime()),
)
_families = table(
    "refresh_token_families",
    column("id", Uuid()),
    column("user_id", Uuid()),
    column("user_agent", String()),
    column("ip", String()),
    column("created_at", UTCDateTime()),
    column("last_used_at", UTCDateTime()),
    column("expires_at", UTCDateTime()),
    column("revoked_at", UTCDateTime()),
)


async def test_a_database_in_use_at_0006_upgrades_to_head(
    new_database_url: DatabaseFactory,
) -> None:
    """A database in use at 0006 (two users, rotated and revoked families, tasks) is
    upgraded: every family becomes a session row (0007), live exactly when one of its tokens
    is; the app then refreshes and lists the migrated session, makes a personal access
    token (0008) that works, and replays a POST sent with an Idempotency-Key (0009)."""
    url = await new_database_url()
    settings = Settings(_env_file=None, app_env="test", **database_settings(url))
    await migrations.upgrade_async(settings, "0006")
    now = datetime.now(UTC).replace(microsecond=0)
    ada, bob = uuid.uuid4(), uuid.uuid4()
    rotated, revoked, bobs = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    live_token = "a" * 64

    def token(
        user_id: uuid.UUID, family_id: uuid.UUID, age: timedelta, *, revoked_at: Any, plain: str
    ) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "user_id": user_id,
            "family_id": family_id,
            "token_hash": hash_token(plain),
            "created_at": now - age,
            "expires_at": now - age + timedelta(days=7),
            "revoked_at": revoked_at,
        }

    engine = create_test_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(_users),
                [
                    {
                        "id": user_id,
                        "email": f"{name}@example.com",
                        "password_hash": "x",
                        "full_name": name,
                        "is_active": True,
                        "created_at": now - timedelta(days=3),
                        "updated_at": now - timedelta(days=3),
                    }
                    for user_id, name in ((ada, "ada"), (bob, "bob"))
                ],
            )
            await connection.execute(
                insert(_refresh_tokens),
                [
                    token(
                        ada,
                        rotated,
                        timedelta(days=2),
                        revoked_at=now - timedelta(days=1),
                        plain="1" * 64,
                    ),
                    token(ada, rotated, timedelta(days=1), revoked_at=None, plain=live_token),
                    token(
                        ada,
                        revoked,
                        timedelta(hours=5),
                        revoked_at=now - timedelta(hours=4),
                        plain="2" * 64,
                    ),
                    token(
                        ada,
                        revoked,
                        timedelta(hours=4),
                        revoked_at=now - timedelta(hours=3),
                        plain="3" * 64,
                    ),
                    token(bob, bobs, timedelta(hours=1), revoked_at=None, plain="4" * 64),
                ],
            )
            await connection.execute(
                insert(_tasks),
                [
                    {
                        "id": uuid.uuid4(),
                        "user_id": ada,
                        "title": f"Task {number}",
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for number in range(3)
                ],
            )
        await engine.dispose()

        await migrations.upgrade_async(settings)

        async with engine.connect() as connection:
            sessions = {row.id: row for row in await connection.execute(select(_families))}
            tasks = await connection.scalar(select(func.count()).select_from(_tasks))
        assert tasks == 3
        assert set(sessions) == {rotated, revoked, bobs}
        live = sessions[rotated]
        assert (live.user_id, live.user_agent, live.ip, live.revoked_at) == (ada, None, None, None)
        assert live.created_at == now - timedelta(days=2)
        assert live.last_used_at == now - timedelta(days=1)
        assert live.expires_at == now + timedelta(days=6)
        assert sessions[revoked].revoked_at == now - timedelta(hours=3)
        assert (sessions[bobs].user_id, sessions[bobs].revoked_at) == (bob, None)
        await engine.dispose()

        app = create_app(settings)
        async with app.router.lifespan_context(app) as state:
            keep_state(app, state)
            async with make_client(app) as client:
                refreshed = await client.post(
                    "/api/v1/auth/refresh", json={"refresh_token": live_token}
                )
                assert refreshed.status_code == 200, refreshed.text
                signed_in = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
                listed = await client.get("/api/v1/auth/sessions", headers=signed_in)
                created = await client.post(
                    "/api/v1/auth/tokens",
                    json={"name": "after the upgrade", "scopes": ["tasks:read"]},
                    headers=signed_in,
                )
                assert created.status_code == 201, created.text
                tasks_page = await client.get(
                    "/api/v1/tasks",
                    headers={"Authorization": f"Bearer {created.json()['token']}"},
                )
                assert tasks_page.status_code == 200, tasks_page.text
                assert tasks_page.json()["total"] == 3
                keyed = {**signed_in, "Idempotency-Key": "after the upgrade"}
                first, again = [
                    await client.post("/api/v1/tasks", json={"title": "Keyed"}, headers=keyed)
                    for _ in range(2)
                ]
                assert (first.status_code, again.status_code) == (201, 201), again.text
                assert again.headers["idempotent-replayed"] == "true"
        assert listed.status_code == 200, listed.text
        assert [item["id"] for item in listed.json()["items"]] == [str(rotated)]
        assert listed.json()["items"][0]["current"] is True
    finally:
        await engine.dispose()
