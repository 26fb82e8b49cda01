"""The database stops while the app runs, then comes back: readiness says so, API calls
answer 503 problem+json that reveals nothing of the database, and once it is back the same
app (no restart) serves again with every row written before the outage.

Runs on both passes: the cluster is the test's own (`own_postgres`)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from taskapi.core import migrations
from taskapi.tasks.models import Task
from tests.support.apps import AppFactory, SettingsFactory, make_client, state_of
from tests.support.factories import DEFAULT_PASSWORD, sign_in
from tests.support.processes import OwnPostgres

pytestmark = pytest.mark.needs_services(
    "initdb", "pg_ctl", reason="stops and restarts a PostgreSQL cluster of its own"
)

API = "/api/v1"
# Words that would tell a client about the database behind the API.
INTERNALS = ("sql", "asyncpg", "postgres", "psycopg", "127.0.0.1", "errno", "connect", "traceback")


def assert_unavailable_without_internals(response: httpx.Response, cluster: OwnPostgres) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["status"] == 503
    assert body["request_id"] == response.headers["x-request-id"]
    lowered = response.text.lower()
    leaked = [word for word in (*INTERNALS, str(cluster.port)) if word in lowered]
    assert leaked == [], response.text


async def test_database_outage_answers_503_and_the_app_recovers_without_restart(
    own_postgres: OwnPostgres,
    make_settings: SettingsFactory,
    app_factory: AppFactory,
) -> None:
    settings = make_settings(database_url=await own_postgres.create_database())
    await migrations.upgrade_async(settings)
    app = await app_factory(settings)
    async with state_of(app)["sessionmaker"]() as session:
        signed = await sign_in(session, settings)

    async with make_client(app) as client:
        created = []
        for number in range(5):
            response = await client.post(
                f"{API}/tasks",
                json={"title": f"Before the outage {number}"},
                headers=signed.headers,
            )
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])
        assert (await client.get("/health")).json()["checks"]["database"] == "ok"

        own_postgres.stop()

        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["database"] == "error"
        live = await client.get("/health/live")
        assert live.status_code == 200
        assert live.json() == {"status": "alive"}

        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"{API}/tasks", None),
            ("GET", f"{API}/tasks/{created[0]}", None),
            ("POST", f"{API}/tasks", {"title": "During the outage"}),
            ("PATCH", f"{API}/tasks/{created[1]}", {"title": "Changed", "version": 1}),
            ("DELETE", f"{API}/tasks/{created[2]}", None),
            ("POST", f"{API}/categories", {"name": "During the outage"}),
            ("PATCH", f"{API}/users/me", {"full_name": "Renamed"}),
        ]
        with capture_logs() as logs:
            for method, path, body in calls:
                response = await client.request(method, path, json=body, headers=signed.headers)
                assert_unavailable_without_internals(response, own_postgres)
            for path, body in [
                ("/auth/login", {"email": signed.user.email, "password": DEFAULT_PASSWORD}),
                (
                    "/auth/register",
                    {
                        "email": f"outage-{uuid.uuid4().hex[:8]}@example.com",
                        "password": DEFAULT_PASSWORD,
                        "full_name": "Grace Hopper",
                    },
                ),
            ]:
                response = await client.post(f"{API}{path}", json=body)
                assert_unavailable_without_internals(response, own_postgres)
            # Reading your own account needs no database while the user cache (Redis) holds
            # it; without Redis this app caches nothing (PostgreSQL), so it is a 503 too.
            me = await client.get(f"{API}/users/me", headers=signed.headers)
            if settings.redis_url is not None:
                assert me.status_code == 200
                assert me.json()["email"] == signed.user.email
            else:
                assert_unavailable_without_internals(me, own_postgres)
        warnings = [entry for entry in logs if entry["event"] == "database_unavailable"]
        assert len(warnings) == len(calls) + 2 + (settings.redis_url is None)
        assert all(entry["log_level"] == "warning" for entry in warnings)

        own_postgres.start()

        listing = await client.get(f"{API}/tasks", params={"limit": 100}, headers=signed.headers)
        assert listing.status_code == 200, listing.text
        assert listing.json()["total"] == 5
        assert sorted(item["id"] for item in listing.json()["items"]) == sorted(created)
        assert all(item["version"] == 1 for item in listing.json()["items"])
        assert (await client.get("/health")).status_code == 200
        after = await client.post(
            f"{API}/tasks", json={"title": "After the outage"}, headers=signed.headers
        )
        assert after.status_code == 201

    async with state_of(app)["sessionmaker"]() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Task).where(Task.deleted_at.is_(None))
        )
        titles = set((await session.scalars(select(Task.title))).all())
    assert stored == 6
    assert titles == {f"Before the outage {n}" for n in range(5)} | {"After the outage"}
