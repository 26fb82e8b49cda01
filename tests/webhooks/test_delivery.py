"""Deliveries to a real receiver on loopback: Standard Webhooks signatures verified with the
`standardwebhooks` package, every event of §7.7 with its data, retries on the schedule
(clock injected), a worker that died mid-delivery, 1,000 changes delivered once each and in
commit order per task, SSRF checks at delivery, no redirects, and the 10 s limit; and which
addresses count as public, IPv6 forms that carry an IPv4 address among them."""

from __future__ import annotations

import ipaddress
import json
import socket
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Settings
from taskapi.core.jobs import Job, JobStatus
from taskapi.core.models import utcnow
from taskapi.webhooks import delivery
from taskapi.webhooks.jobs import DELIVER, RETRY_DELAYS, RETRY_FOR
from taskapi.webhooks.models import Webhook, WebhookDelivery
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.factories import SignedIn
from tests.support.jobs import FakeClock, run_jobs
from tests.support.tasks import TASKS
from tests.support.webhooks import WEBHOOKS, FakeDns, Receiver, closed_port

CATEGORIES = "/api/v1/categories"
ALL_EVENTS = [
    "task.created",
    "task.updated",
    "task.completed",
    "task.deleted",
    "task.restored",
    "category.created",
    "category.updated",
    "category.deleted",
]


@pytest.fixture
async def hook_app(
    app_factory: AppFactory, make_settings: SettingsFactory, settings: Settings
) -> FastAPI:
    """The app with private targets allowed (the receiver is on loopback); same secret as
    `settings`, so alice signs in."""
    return await app_factory(
        make_settings(webhook_allow_private_targets=True, jwt_secret_key=settings.secret_key)
    )


@pytest.fixture
async def client(hook_app: FastAPI) -> Any:
    async with make_client(hook_app) as http:
        yield http


async def subscribe(
    client: httpx.AsyncClient, signed_in: SignedIn, url: str, events: list[str] = ALL_EVENTS
) -> dict[str, Any]:
    response = await client.post(
        WEBHOOKS, json={"url": url, "events": events}, headers=signed_in.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def deliveries(session: AsyncSession) -> list[WebhookDelivery]:
    rows = list(
        await session.scalars(
            select(WebhookDelivery)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
            .execution_options(populate_existing=True)
        )
    )
    await session.commit()
    return rows


async def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


async def test_every_event_arrives_signed_with_the_resource_after_the_change(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    session: AsyncSession,
) -> None:
    hook = await subscribe(client, alice, receiver.url())
    headers = alice.headers
    task = await ok(await client.post(TASKS, json={"title": "Write"}, headers=headers), 201)
    task = await ok(
        await client.patch(
            f"{TASKS}/{task['id']}", json={"title": "Write more", "version": 1}, headers=headers
        )
    )
    task = await ok(
        await client.patch(
            f"{TASKS}/{task['id']}", json={"status": "completed", "version": 2}, headers=headers
        )
    )
    await ok(await client.delete(f"{TASKS}/{task['id']}", headers=headers), 204)
    restored = await ok(await client.post(f"{TASKS}/{task['id']}/restore", headers=headers))
    category = await ok(await client.post(CATEGORIES, json={"name": "Home"}, headers=headers), 201)
    renamed = await ok(
        await client.patch(
            f"{CATEGORIES}/{category['id']}", json={"name": "House"}, headers=headers
        )
    )
    await ok(await client.delete(f"{CATEGORIES}/{category['id']}", headers=headers), 204)
    # A change that fails writes no event.
    stale = await client.patch(
        f"{TASKS}/{task['id']}", json={"title": "Lost", "version": 1}, headers=headers
    )
    assert stale.status_code == 409

    assert await run_jobs(hook_app) == 8
    # Deliveries run side by side, so they may arrive in any order; the log keeps the
    # order of the changes, and each attempt carries its delivery's id as webhook-id.
    rows = await deliveries(session)
    assert [row.event for row in rows] == ALL_EVENTS
    assert {(row.attempts, row.status_code) for row in rows} == {(1, 204)}
    assert all(row.delivered_at is not None and row.next_attempt_at is None for row in rows)
    by_id = {received.headers["webhook-id"]: received for received in receiver.received}
    assert len(by_id) == len(receiver.received) == 8
    arrived = [by_id[str(row.id)] for row in rows]
    bodies = [received.verified_by(hook["secret"]) for received in arrived]
    assert [body["type"] for body in bodies] == ALL_EVENTS
    data = [body["data"] for body in bodies]
    assert data[0]["title"] == "Write"
    assert (data[1]["title"], data[1]["version"]) == ("Write more", 2)
    assert (data[2]["status"], data[2]["completed_at"]) == ("completed", task["completed_at"])
    assert data[3] == {"id": task["id"]}
    assert data[4] == restored
    assert data[5] == category
    assert data[6] == renamed
    assert data[7] == {"id": category["id"]}
    for received in arrived:
        assert received.path == "/hook"
        assert received.headers["content-type"] == "application/json"
        assert received.headers["webhook-signature"].startswith("v1,")
        assert set(json.loads(received.body)) == {"type", "timestamp", "data"}


async def test_only_subscribed_events_of_enabled_webhooks_are_delivered(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    bob: SignedIn,
    receiver: Receiver,
) -> None:
    completed_only = await subscribe(client, alice, receiver.url("/done"), ["task.completed"])
    paused = await subscribe(client, alice, receiver.url("/paused"))
    await ok(
        await client.patch(
            f"{WEBHOOKS}/{paused['id']}", json={"enabled": False}, headers=alice.headers
        )
    )
    await ok(await client.post(TASKS, json={"title": "Bob's"}, headers=bob.headers), 201)
    task = await ok(await client.post(TASKS, json={"title": "Mine"}, headers=alice.headers), 201)
    await ok(
        await client.patch(
            f"{TASKS}/{task['id']}",
            json={"status": "completed", "version": 1},
            headers=alice.headers,
        )
    )
    assert await run_jobs(hook_app) == 1
    [received] = receiver.received
    assert received.path == "/done"
    assert received.verified_by(completed_only["secret"])["type"] == "task.completed"


async def test_a_receiver_failing_three_times_gets_the_event_once_as_a_2xx(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    session: AsyncSession,
) -> None:
    hook = await subscribe(client, alice, receiver.url())
    receiver.answers.extend([500, 503, 404, 200])
    await ok(await client.post(TASKS, json={"title": "Once"}, headers=alice.headers), 201)
    clock = FakeClock()
    for attempt in range(1, 5):
        assert await run_jobs(hook_app, clock=clock) == 1
        [row] = await deliveries(session)
        assert row.attempts == attempt
        if attempt < 4:
            assert row.delivered_at is None
            assert row.next_attempt_at is not None
            clock.now = row.next_attempt_at
    [row] = await deliveries(session)
    assert (row.status_code, row.delivered_at, row.next_attempt_at) == (200, clock.now, None)
    assert len(receiver.received) == 4
    assert len({received.body for received in receiver.received}) == 1
    assert len({received.headers["webhook-id"] for received in receiver.received}) == 1
    for received in receiver.received:
        assert received.verified_by(hook["secret"])["type"] == "task.created"
    assert await run_jobs(hook_app, clock=FakeClock(now=clock.now + RETRY_FOR)) == 0
    assert len(receiver.received) == 4


async def test_a_receiver_that_never_answers_is_retried_on_the_schedule_then_given_up(
    client: httpx.AsyncClient, hook_app: FastAPI, alice: SignedIn, session: AsyncSession
) -> None:
    await subscribe(client, alice, f"http://127.0.0.1:{closed_port()}/hook")
    await ok(await client.post(TASKS, json={"title": "Lost"}, headers=alice.headers), 201)
    clock = FakeClock()
    for attempt, delay in enumerate([*RETRY_DELAYS, None], start=1):
        assert await run_jobs(hook_app, clock=clock) == 1
        [row] = await deliveries(session)
        assert (row.attempts, row.status_code, row.delivered_at) == (attempt, None, None)
        assert row.last_error is not None
        if delay is None:
            assert row.next_attempt_at is None
            break
        assert row.next_attempt_at is not None
        waited = (row.next_attempt_at - clock.now).total_seconds()
        assert 0.8 * delay.total_seconds() <= waited <= 1.2 * delay.total_seconds()
        assert (
            await run_jobs(
                hook_app, clock=FakeClock(now=row.next_attempt_at - timedelta(seconds=1))
            )
            == 0
        )
        clock.now = row.next_attempt_at
    assert row.attempts == len(RETRY_DELAYS) + 1
    assert await session.scalar(select(Job).where(Job.kind == DELIVER.name)) is None
    log = await client.get(f"{WEBHOOKS}/{row.webhook_id}/deliveries", headers=alice.headers)
    [item] = log.json()["items"]
    assert (item["attempts"], item["delivered_at"], item["next_attempt_at"]) == (7, None, None)


async def test_a_delivery_whose_worker_died_is_sent_after_the_lease(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    session: AsyncSession,
) -> None:
    hook = await subscribe(client, alice, receiver.url())
    await ok(await client.post(TASKS, json={"title": "Orphan"}, headers=alice.headers), 201)
    clock = FakeClock()
    # As a worker killed mid-attempt leaves it: claimed, under a lease, never completed.
    await session.execute(
        update(Job)
        .where(Job.kind == DELIVER.name)
        .values(
            status=JobStatus.RUNNING.value,
            attempts=1,
            locked_by="a worker that was killed",
            locked_until=clock.now + DELIVER.lease_duration,
        )
    )
    await session.commit()
    assert await run_jobs(hook_app, clock=clock) == 0
    assert receiver.received == []
    clock.advance(seconds=DELIVER.lease_duration.total_seconds())
    assert await run_jobs(hook_app, clock=clock) == 1
    [received] = receiver.received
    assert received.verified_by(hook["secret"])["type"] == "task.created"
    [row] = await deliveries(session)
    assert (row.attempts, row.status_code) == (1, 204)


async def test_1000_task_changes_are_1000_events_once_each_in_commit_order_per_task(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    session: AsyncSession,
) -> None:
    hook = await subscribe(client, alice, receiver.url())
    changes = 0
    for number in range(100):
        task = await ok(
            await client.post(TASKS, json={"title": f"Task {number}"}, headers=alice.headers), 201
        )
        changes += 1
        for version in range(1, 10):
            task = await ok(
                await client.patch(
                    f"{TASKS}/{task['id']}",
                    json={"description": f"change {version}", "version": version},
                    headers=alice.headers,
                )
            )
            changes += 1
    assert changes == 1000
    assert await run_jobs(hook_app) == 1000
    assert len(receiver.received) == 1000
    ids = {received.headers["webhook-id"] for received in receiver.received}
    assert len(ids) == 1000
    versions: dict[str, list[int]] = {}
    for received in receiver.received:
        data = received.verified_by(hook["secret"])["data"]
        assert isinstance(data, dict)
        versions.setdefault(data["id"], []).append(data["version"])
    assert len(versions) == 100
    assert all(sorted(seen) == list(range(1, 11)) for seen in versions.values())
    # The log keeps the events in the order their changes committed.
    logged: dict[str, list[int]] = {}
    for row in await deliveries(session):
        data = json.loads(row.body)["data"]
        logged.setdefault(data["id"], []).append(data["version"])
    assert all(seen == list(range(1, 11)) for seen in logged.values())


async def test_two_signatures_during_a_rotation_then_only_the_new_one(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
) -> None:
    hook = await subscribe(client, alice, receiver.url())
    rotated = await ok(
        await client.post(f"{WEBHOOKS}/{hook['id']}/rotate-secret", headers=alice.headers)
    )
    await ok(await client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=alice.headers), 202)
    assert await run_jobs(hook_app) == 1
    [during] = receiver.received
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verified_by(hook["secret"])["type"] == "ping"
    assert during.verified_by(rotated["secret"])["data"] == {"webhook_id": hook["id"]}

    await ok(await client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=alice.headers), 202)
    later = FakeClock(now=FakeClock().now + timedelta(hours=24, minutes=1))
    assert await run_jobs(hook_app, clock=later) == 1
    after = receiver.received[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    after.verified_by(rotated["secret"])
    with pytest.raises(Exception, match="No matching signature"):
        after.verified_by(hook["secret"])


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    dns: FakeDns,
) -> None:
    dns.names["receiver.test"] = ["127.0.0.1"]
    await subscribe(client, alice, f"http://receiver.test:{receiver.port}/named")
    await ok(await client.post(TASKS, json={"title": "Named"}, headers=alice.headers), 201)
    assert await run_jobs(hook_app) == 1
    [received] = receiver.received
    assert received.headers["host"] == f"receiver.test:{receiver.port}"
    assert dns.asked == ["receiver.test", "receiver.test"]  # at creation, at delivery


async def test_a_name_that_turned_private_after_creation_is_refused_at_delivery(
    app_factory: AppFactory,
    make_settings: SettingsFactory,
    settings: Settings,
    alice: SignedIn,
    dns: FakeDns,
    session: AsyncSession,
) -> None:
    app = await app_factory(make_settings(jwt_secret_key=settings.secret_key))
    dns.names["rebind.example.com"] = ["93.184.215.14"]
    async with make_client(app) as http:
        await subscribe(http, alice, "https://rebind.example.com/hook")
        await ok(await http.post(TASKS, json={"title": "Rebind"}, headers=alice.headers), 201)
    dns.names["rebind.example.com"] = ["169.254.169.254"]
    assert await run_jobs(app) == 1
    [row] = await deliveries(session)
    assert (row.attempts, row.status_code, row.delivered_at) == (1, None, None)
    assert row.last_error == "the host 'rebind.example.com' is not a public address"
    assert row.next_attempt_at is not None
    assert dns.asked == ["rebind.example.com", "rebind.example.com"]


async def test_a_redirect_is_not_followed(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    session: AsyncSession,
) -> None:
    await subscribe(client, alice, receiver.url("/moved"))
    receiver.answers.append(307)
    receiver.location = receiver.url("/elsewhere")
    await ok(await client.post(TASKS, json={"title": "Moved"}, headers=alice.headers), 201)
    assert await run_jobs(hook_app) == 1
    assert [received.path for received in receiver.received] == ["/moved"]
    [row] = await deliveries(session)
    assert (row.status_code, row.delivered_at) == (307, None)
    assert row.next_attempt_at is not None


async def test_an_attempt_past_its_time_limit_fails(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A receiver that accepts the connection and never answers: the attempt ends at the
    limit (shortened here from 10 s)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        monkeypatch.setattr(delivery, "ATTEMPT_TIMEOUT_SECONDS", 0.3)
        await subscribe(client, alice, f"http://127.0.0.1:{silent.getsockname()[1]}/slow")
        await ok(await client.post(TASKS, json={"title": "Slow"}, headers=alice.headers), 201)
        assert await run_jobs(hook_app) == 1
    finally:
        silent.close()
    [row] = await deliveries(session)
    assert (row.attempts, row.status_code) == (1, None)
    assert row.last_error == "no answer within 0.3 s"


async def test_deleting_a_webhook_drops_its_pending_deliveries(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    session: AsyncSession,
) -> None:
    hook = await subscribe(client, alice, receiver.url())
    await ok(await client.post(TASKS, json={"title": "Gone"}, headers=alice.headers), 201)
    await ok(await client.delete(f"{WEBHOOKS}/{hook['id']}", headers=alice.headers), 204)
    assert await run_jobs(hook_app) == 1
    assert receiver.received == []
    assert await deliveries(session) == []
    assert await session.scalar(select(Webhook)) is None


async def test_completing_a_recurring_task_also_announces_the_next_one(
    client: httpx.AsyncClient,
    hook_app: FastAPI,
    alice: SignedIn,
    receiver: Receiver,
    session: AsyncSession,
) -> None:
    hook = await subscribe(client, alice, receiver.url(), ["task.created", "task.completed"])
    due = (utcnow() + timedelta(days=1)).replace(microsecond=0)
    task = await ok(
        await client.post(
            TASKS,
            json={"title": "Water plants", "due_date": due.isoformat(), "recurrence": "FREQ=DAILY"},
            headers=alice.headers,
        ),
        201,
    )
    done = await ok(
        await client.patch(
            f"{TASKS}/{task['id']}",
            json={"status": "completed", "version": 1},
            headers=alice.headers,
        )
    )
    assert await run_jobs(hook_app) == 3
    by_id = {received.headers["webhook-id"]: received for received in receiver.received}
    bodies = [by_id[str(row.id)].verified_by(hook["secret"]) for row in await deliveries(session)]
    assert [body["type"] for body in bodies] == ["task.created", "task.created", "task.completed"]
    following = bodies[1]["data"]
    assert following["id"] == done["next_occurrence_id"]
    assert (following["title"], following["status"]) == ("Water plants", "pending")
    assert following["due_date"] == (due + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert bodies[2]["data"] == done


# IPv6 forms that carry an IPv4 address, by what they carry.
EMBEDDING_NON_PUBLIC = [
    "::ffff:10.0.0.1",  # IPv4-mapped
    "64:ff9b::a00:1",  # NAT64 well-known prefix (RFC 6052): 10.0.0.1
    "64:ff9b::7f00:1",  # 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # 169.254.169.254
    "64:ff9b::e000:1",  # 224.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4: 169.254.169.254
    "2002:7f00:1::",  # 127.0.0.1
    "2002:c0a8:1::1",  # 192.168.0.1
    "2002:6440:1::1",  # 100.64.0.1, shared address space
]
EMBEDDING_PUBLIC = [
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]
REFUSED_WHATEVER_THEY_EMBED = [
    "64:ff9b:1::808:808",  # NAT64 local-use prefix (RFC 8215)
    "64:ff9b:1:a00:1::",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo: server 65.54.227.120
    "2001:0:808:808:0:0:f7f7:f7f7",  # Teredo: server and client 8.8.8.8
    "::808:808",  # IPv4-compatible (deprecated)
    "::a00:1",
]


@pytest.mark.parametrize("address", EMBEDDING_NON_PUBLIC + REFUSED_WHATEVER_THEY_EMBED)
def test_an_ipv6_address_carrying_a_non_public_ipv4_one_is_not_public(address: str) -> None:
    assert not delivery.is_public(ipaddress.IPv6Address(address))


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
def test_an_ipv6_address_carrying_a_public_ipv4_one_is_public(address: str) -> None:
    assert delivery.is_public(ipaddress.IPv6Address(address))


@pytest.mark.parametrize("address", EMBEDDING_NON_PUBLIC + REFUSED_WHATEVER_THEY_EMBED)
async def test_a_url_at_an_address_carrying_a_non_public_ipv4_one_is_refused(
    dns: FakeDns, address: str
) -> None:
    with pytest.raises(delivery.TargetRefused):
        await delivery.checked_address(httpx.URL(f"https://[{address}]/"), allow_private=False)
    dns.names["hooks.example.com"] = ["93.184.215.14", address]
    with pytest.raises(delivery.TargetRefused):
        await delivery.checked_address(httpx.URL("https://hooks.example.com/"), allow_private=False)
    assert dns.asked == ["hooks.example.com"]


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
async def test_a_url_at_an_address_carrying_a_public_ipv4_one_is_allowed(
    dns: FakeDns, address: str
) -> None:
    dns.names["hooks.example.com"] = [address]
    checked = await delivery.checked_address(
        httpx.URL("https://hooks.example.com/"), allow_private=False
    )
    assert checked == ipaddress.IPv6Address(address)
