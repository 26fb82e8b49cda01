"""The /webhooks endpoints: create (secret shown once), list, get, change, delete, rotate the
secret, the test event and the delivery log; 404 for another user's webhook; the limit; and
targets refused at creation without a packet sent to them (DNS answered by the test)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Environment, Settings
from taskapi.core.jobs import Job
from taskapi.webhooks import service
from taskapi.webhooks.models import Webhook, WebhookDelivery
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.factories import SignedIn
from tests.support.problems import assert_problem, field_errors
from tests.support.webhooks import WEBHOOKS, FakeDns

PUBLIC = "https://hooks.example.com/taskapi"
WEBHOOK_FIELDS = {"id", "url", "events", "description", "enabled", "created_at", "updated_at"}


@pytest.fixture
def public_dns(dns: FakeDns) -> FakeDns:
    dns.names["hooks.example.com"] = ["93.184.215.14"]
    return dns


async def create(client: httpx.AsyncClient, signed_in: SignedIn, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        WEBHOOKS,
        json={"url": PUBLIC, "events": ["task.created"], **fields},
        headers=signed_in.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def named_fields(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}


async def stored(session: AsyncSession) -> list[Webhook]:
    webhooks = list(
        await session.scalars(select(Webhook).execution_options(populate_existing=True))
    )
    await session.commit()
    return webhooks


async def test_create_shows_the_secret_once_then_list_get_patch_delete(
    client: httpx.AsyncClient, alice: SignedIn, session: AsyncSession, public_dns: FakeDns
) -> None:
    response = await client.post(
        WEBHOOKS,
        json={
            "url": PUBLIC,
            "events": ["task.completed", "task.created", "task.created"],
            "description": "  Team chat ",
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {*WEBHOOK_FIELDS, "secret"}
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["task.completed", "task.created"]
    assert (created["url"], created["description"], created["enabled"]) == (
        PUBLIC,
        "Team chat",
        True,
    )
    assert response.headers["location"].endswith(f"{WEBHOOKS}/{created['id']}")
    assert public_dns.asked == ["hooks.example.com"]
    [row] = await stored(session)
    assert (row.user_id, row.secret) == (alice.user.id, created["secret"])

    listed = await client.get(WEBHOOKS, headers=alice.headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    assert set(listed.json()["items"][0]) == WEBHOOK_FIELDS
    one = await client.get(f"{WEBHOOKS}/{created['id']}", headers=alice.headers)
    assert one.status_code == 200
    assert "secret" not in one.json()

    changed = await client.patch(
        f"{WEBHOOKS}/{created['id']}",
        json={"events": ["category.deleted"], "enabled": False, "description": None},
        headers=alice.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["events"], changed.json()["enabled"]) == (["category.deleted"], False)
    assert changed.json()["description"] is None
    [row] = await stored(session)
    assert (row.events, row.enabled, row.description) == (["category.deleted"], False, None)

    deleted = await client.delete(f"{WEBHOOKS}/{created['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    assert await stored(session) == []
    gone = await client.get(f"{WEBHOOKS}/{created['id']}", headers=alice.headers)
    assert_problem(gone, 404, "not_found")


async def test_another_users_webhook_is_404_everywhere(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn, public_dns: FakeDns
) -> None:
    webhook = await create(client, alice)
    path = f"{WEBHOOKS}/{webhook['id']}"
    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"enabled": False}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/test", None),
        ("GET", f"{path}/deliveries", None),
    ]:
        response = await client.request(method, url, json=body, headers=bob.headers)
        assert_problem(response, 404, "not_found")
    assert (await client.get(WEBHOOKS, headers=bob.headers)).json() == {"items": [], "total": 0}
    assert (await client.get(path, headers=alice.headers)).json()["enabled"] is True


async def test_bad_input_is_400(
    client: httpx.AsyncClient, alice: SignedIn, public_dns: FakeDns
) -> None:
    for body, field in [
        ({"url": PUBLIC, "events": ["task.exploded"]}, "events.0"),
        ({"url": PUBLIC, "events": []}, "events"),
        ({"url": PUBLIC}, "events"),
        ({"events": ["task.created"]}, "url"),
    ]:
        response = await client.post(WEBHOOKS, json=body, headers=alice.headers)
        assert field in field_errors(response), response.text
    for url in ["ftp://hooks.example.com/x", "https://user:pw@hooks.example.com/", "not a url"]:
        response = await client.post(
            WEBHOOKS, json={"url": url, "events": ["task.created"]}, headers=alice.headers
        )
        problem = assert_problem(response, 400, "invalid_webhook_url")
        assert named_fields(problem) == {"url"}


async def test_more_than_20_webhooks_is_400(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn, public_dns: FakeDns
) -> None:
    for _ in range(service.MAX_WEBHOOKS):
        await create(client, alice)
    response = await client.post(
        WEBHOOKS, json={"url": PUBLIC, "events": ["task.created"]}, headers=alice.headers
    )
    assert_problem(response, 400, "webhook_limit_reached")
    await create(client, bob)


@pytest.mark.parametrize(
    ("url", "resolves_to"),
    [
        ("http://127.0.0.1/hook", None),
        ("http://[::1]/hook", None),
        ("http://169.254.169.254/latest/meta-data/", None),
        ("http://10.0.0.1/hook", None),
        ("http://[::ffff:10.0.0.1]/hook", None),
        ("http://[64:ff9b::a00:1]/hook", None),
        ("http://[2002:a9fe:a9fe::1]/latest/meta-data/", None),
        ("http://nat64.example.com/hook", ["64:ff9b::7f00:1"]),
        ("http://224.0.0.1/hook", None),
        ("http://internal.example.com/hook", ["10.1.2.3"]),
        ("http://mixed.example.com/hook", ["93.184.215.14", "192.168.0.10"]),
        ("http://metadata.example.com/hook", ["fd00:ec2::254"]),
    ],
)
async def test_non_public_targets_are_refused_without_a_connection(
    client: httpx.AsyncClient,
    alice: SignedIn,
    session: AsyncSession,
    dns: FakeDns,
    url: str,
    resolves_to: list[str] | None,
) -> None:
    host = httpx.URL(url).host
    if resolves_to is not None:
        dns.names[host] = resolves_to
    response = await client.post(
        WEBHOOKS, json={"url": url, "events": ["task.created"]}, headers=alice.headers
    )
    problem = assert_problem(response, 400, "webhook_target_not_allowed")
    assert named_fields(problem) == {"url"}
    # A literal address is judged without a look-up; a name is looked up once, and nothing
    # else happens: the check is all there is at creation.
    assert dns.asked == ([] if resolves_to is None else [host])
    assert await stored(session) == []


async def test_a_host_that_does_not_resolve_is_refused(
    client: httpx.AsyncClient, alice: SignedIn, dns: FakeDns
) -> None:
    response = await client.post(
        WEBHOOKS,
        json={"url": "https://nowhere.example.com/", "events": ["task.created"]},
        headers=alice.headers,
    )
    assert_problem(response, 400, "webhook_target_not_allowed")
    assert dns.asked == ["nowhere.example.com"]


async def test_private_targets_are_allowed_when_configured(
    app_factory: AppFactory,
    make_settings: SettingsFactory,
    settings: Settings,
    alice: SignedIn,
    dns: FakeDns,
) -> None:
    app = await app_factory(
        make_settings(webhook_allow_private_targets=True, jwt_secret_key=settings.secret_key)
    )
    async with make_client(app) as http:
        response = await http.post(
            WEBHOOKS,
            json={"url": "http://127.0.0.1:9/hook", "events": ["task.created"]},
            headers=alice.headers,
        )
    assert response.status_code == 201, response.text


async def test_production_takes_https_only(settings: Settings, public_dns: FakeDns) -> None:
    production = settings.model_copy(update={"app_env": Environment.PRODUCTION})
    assert production.is_production
    with pytest.raises(service.InvalidWebhookUrl, match="scheme must be https"):
        await service._checked_url("http://hooks.example.com/taskapi", production)
    assert await service._checked_url(PUBLIC, production) == PUBLIC


async def test_rotating_the_secret_keeps_the_old_one_for_a_day(
    client: httpx.AsyncClient, alice: SignedIn, session: AsyncSession, public_dns: FakeDns
) -> None:
    webhook = await create(client, alice)
    response = await client.post(f"{WEBHOOKS}/{webhook['id']}/rotate-secret", headers=alice.headers)
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != webhook["secret"]
    [row] = await stored(session)
    assert (row.secret, row.previous_secret) == (rotated["secret"], webhook["secret"])
    assert row.previous_secret_expires_at is not None
    assert row.previous_secret_expires_at.isoformat().startswith(
        rotated["previous_secret_expires_at"][:16]
    )


async def test_the_test_endpoint_queues_a_ping_and_the_log_lists_it(
    client: httpx.AsyncClient, alice: SignedIn, session: AsyncSession, public_dns: FakeDns
) -> None:
    webhook = await create(client, alice)
    response = await client.post(f"{WEBHOOKS}/{webhook['id']}/test", headers=alice.headers)
    assert response.status_code == 202
    [row] = list(await session.scalars(select(WebhookDelivery)))
    assert row.event == "ping"
    [job] = list(await session.scalars(select(Job).where(Job.kind == "webhooks.deliver")))
    assert job.payload == {"delivery_id": str(row.id)}
    log = await client.get(f"{WEBHOOKS}/{webhook['id']}/deliveries", headers=alice.headers)
    assert log.status_code == 200
    [item] = log.json()["items"]
    assert item == {
        "id": str(row.id),
        "event": "ping",
        "status_code": None,
        "attempts": 0,
        "delivered_at": None,
        "next_attempt_at": item["next_attempt_at"],
        "duration_ms": None,
    }
    assert item["next_attempt_at"] is not None
