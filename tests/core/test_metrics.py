import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

from taskapi.auth.metrics import AUTH_FAILURE_REASONS, record_auth_failure
from taskapi.core.metrics import BoundedCounter
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.jobs import run_jobs
from tests.support.metrics import scrape, value
from tests.support.processes import ServeFactory

TEMPLATE = "/api/v1/probe-metrics/items/{item_id}"

probe = APIRouter(prefix="/api/v1/probe-metrics")


@probe.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


async def metrics_app(
    make_settings: SettingsFactory, app_factory: AppFactory, **overrides: Any
) -> FastAPI:
    app: FastAPI = await app_factory(make_settings(enable_metrics=True, **overrides))
    app.include_router(probe)
    return app


async def test_metrics_off_means_no_endpoint(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 404


async def test_requests_are_labelled_by_route_template_never_raw_path(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await metrics_app(make_settings, app_factory)
    unknown = f"/api/v1/nothing-{uuid.uuid4().hex}"
    async with make_client(app) as client:
        before = await scrape(client)
        assert (await client.get("/api/v1/probe-metrics/items/1")).status_code == 200
        assert (await client.get("/api/v1/probe-metrics/items/2")).status_code == 200
        assert (await client.get("/api/v1/probe-metrics/items/3/")).status_code == 404
        assert (await client.get(unknown)).status_code == 404
        assert (await client.post("/health/live")).status_code == 405
        # A route of a router the app includes under its prefix (/api/v1) knows its path
        # without it: the label is still the whole template.
        assert (await client.get(f"/api/v1/tasks/{uuid.uuid4()}")).status_code == 401
        after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "http_requests_total"
    assert delta(requests, handler=TEMPLATE, method="GET", status="200") == 2
    assert delta(requests, handler="none", method="GET", status="404") == 2
    assert delta(requests, handler="/health/live", method="POST", status="405") == 1
    assert delta(requests, handler="/api/v1/tasks/{task_id}", method="GET", status="401") == 1
    duration = "http_request_duration_seconds_count"
    assert delta(duration, handler=TEMPLATE, method="GET") == 2
    handlers = {dict(labels).get("handler") for _, labels in after}
    assert not any(h and ("/items/1" in h or "/items/3" in h or "nothing-" in h) for h in handlers)


async def test_metrics_show_the_job_queue_from_the_database(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await metrics_app(make_settings, app_factory)
    kind = "auth.verification_email"
    async with make_client(app) as client:
        before = await scrape(client)
        assert value(before, "job_queue_depth", kind=kind, state="waiting") == 0
        assert ("job_failures_total", frozenset({("kind", kind), ("outcome", "retry")})) in before
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": "ada@example.com", "password": "Str0ng!Passw0rd", "full_name": "Ada"},
        )
        assert response.status_code == 201
        queued = await scrape(client)
        assert value(queued, "job_queue_depth", kind=kind, state="waiting") == 1
        assert value(queued, "job_queue_lag_seconds") >= 0
        await run_jobs(app)
        after = await scrape(client)
    assert value(after, "job_queue_depth", kind=kind, state="waiting") == 0
    assert value(after, "jobs_completed_total", kind=kind) == (
        value(before, "jobs_completed_total", kind=kind) + 1
    )


async def test_auth_failures_counter_has_a_bounded_label_set(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await metrics_app(make_settings, app_factory)
    async with make_client(app) as client:
        before = await scrape(client)
        record_auth_failure("invalid_credentials")
        record_auth_failure("invalid_credentials")
        record_auth_failure("account_locked")
        record_auth_failure(f"attacker-chosen-{uuid.uuid4().hex}")
        after = await scrape(client)

    def delta(reason: str) -> float:
        name = "auth_failures_total"
        return value(after, name, reason=reason) - value(before, name, reason=reason)

    assert delta("invalid_credentials") == 2
    assert delta("account_locked") == 1
    assert delta("other") == 1
    reasons = {dict(labels)["reason"] for name, labels in after if name == "auth_failures_total"}
    assert reasons == AUTH_FAILURE_REASONS


def test_bounded_counter_exports_its_values_and_refuses_others_without_a_fallback() -> None:
    name = f"probe_{uuid.uuid4().hex}_total"
    counter = BoundedCounter(name, "A probe.", label="kind", values=("a", "b"))
    counter.inc("a")
    assert REGISTRY.get_sample_value(name, {"kind": "a"}) == 1
    assert REGISTRY.get_sample_value(name, {"kind": "b"}) == 0
    with pytest.raises(ValueError, match="not a label value"):
        counter.inc("c")
    assert REGISTRY.get_sample_value(name, {"kind": "c"}) is None


async def test_rate_limit_rejections_are_counted(
    make_settings: SettingsFactory, app_factory: AppFactory
) -> None:
    app = await metrics_app(
        make_settings, app_factory, enable_rate_limiting=True, rate_limit_anonymous_per_minute=1
    )
    async with make_client(app) as client:
        before = await scrape(client)
        statuses = [(await client.get("/api/v1/x")).status_code for _ in range(3)]
        after = await scrape(client)
        for _ in range(3):
            await scrape(client)

    name = "rate_limit_rejections_total"
    assert statuses == [404, 429, 429]
    assert value(after, name, scope="anonymous") - value(before, name, scope="anonymous") == 2
    assert value(after, name, scope="user") - value(before, name, scope="user") == 0
    delta_429 = value(after, "http_requests_total", handler="none", method="GET", status="429")
    delta_429 -= value(before, "http_requests_total", handler="none", method="GET", status="429")
    assert delta_429 == 2


def served_by_worker(multiproc_dir: Path, handler: str) -> dict[str, float]:
    """Requests to `handler` per worker PID, read from each worker's own counter file."""
    served: dict[str, float] = {}
    for path in multiproc_dir.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        served[pid] = sum(
            sample.value
            for metric in MultiProcessCollector.merge(  # type: ignore[no-untyped-call]  # untyped upstream
                [str(path)], accumulate=True
            )
            for sample in metric.samples
            if sample.name == "http_requests_total" and sample.labels.get("handler") == handler
        )
    return served


async def test_metrics_add_up_across_two_uvicorn_workers(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """`taskapi serve` with WORKERS=2 makes a fresh multiprocess directory (under TMPDIR,
    pointed here so the test can look), and whichever worker answers /metrics reports the
    requests of both."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    server = await asyncio.to_thread(
        serve,
        {
            "APP_ENV": "development",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}",
            "REDIS_URL": "",
            "WORKERS": "2",
            "ENABLE_METRICS": "true",
            "ENABLE_RATE_LIMITING": "false",
            "TMPDIR": str(tmpdir),
        },
    )
    (multiproc_dir,) = tmpdir.glob("taskapi-metrics-*")

    async def one_request() -> None:
        # A connection of its own per request, so that both workers get to accept some.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as fresh:
            assert (await fresh.get("/health")).status_code == 200

    sent = 0
    while True:
        await one_request()
        sent += 1
        per_worker = served_by_worker(multiproc_dir, "/health")
        if sent >= 20 and len(per_worker) == 2 and all(per_worker.values()):
            break
        assert sent < 400, f"one worker accepted every connection: {per_worker}"
    # A request is counted just after its response is sent, so the client
    # can be a moment ahead of the counter files.
    deadline = time.monotonic() + 5
    while sum(served_by_worker(multiproc_dir, "/health").values()) < sent:
        assert time.monotonic() < deadline, "the last requests were never counted"
        await asyncio.sleep(0.01)
    assert sum(served_by_worker(multiproc_dir, "/health").values()) == sent

    for _ in range(6):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as fresh:
            samples = await scrape(fresh)
        assert (
            value(samples, "http_requests_total", handler="/health", method="GET", status="200")
            == sent
        )
        assert value(samples, "auth_failures_total", reason="invalid_credentials") == 0
        # The queue gauges are read from the database by whichever process answers: one
        # series per kind and state, never one per process.
        periodic = [
            count
            for (name, labels), count in samples.items()
            if name == "job_queue_depth" and dict(labels)["kind"] == "jobs.prune_failed"
        ]
        assert len(periodic) == 4
        assert sum(periodic) in {0, 1}
        assert not any("pid" in dict(labels) for name, labels in samples if name.startswith("job"))

    await asyncio.to_thread(server.stop)
    assert server.process.returncode == 0
    assert not multiproc_dir.exists()
