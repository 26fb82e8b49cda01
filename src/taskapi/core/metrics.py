"""Prometheus metrics: HTTP traffic by route template, and `BoundedCounter` for the counters
operators alert on (each lives with what it counts: auth failures in auth/metrics.py, rate
limit rejections in core/ratelimit.py).

Every metric lives in the process-wide default registry, so code without access to the app
can count too. With several uvicorn workers `taskapi serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start; prometheus_client
then keeps every value in a file there, and `/metrics` sums all workers' files.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    Summary,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskapi.core.openapi import operation_id

METRICS_PATH = "/metrics"
UNMATCHED_HANDLER = "none"
BEFORE_SCRAPE_TIMEOUT_SECONDS = 2.0

log = structlog.get_logger("taskapi.metrics")


class BoundedCounter:
    """A Prometheus counter with one label whose values are fixed up front and exported from
    the start (at 0). Each label value is a time series Prometheus keeps, so a caller must
    never grow the set: a value outside it counts as `fallback`, or is a programming error
    when there is none."""

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        label: str,
        values: Iterable[str],
        fallback: str | None = None,
    ) -> None:
        self.values = frozenset(values)
        self._fallback = fallback
        self._counter = Counter(name, documentation, labelnames=[label])
        for value in self.values:
            self._counter.labels(value)

    def inc(self, value: str) -> None:
        if value not in self.values:
            if self._fallback is None:
                raise ValueError(f"{value!r} is not a label value of this counter")
            value = self._fallback
        self._counter.labels(value).inc()


# The names, labels and buckets of prometheus-fastapi-instrumentator's default metrics,
# which dashboards built for it expect.
_LATENCY_HIGHR_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60,
)  # fmt: skip
_LATENCY_LOWR_BUCKETS = (0.1, 0.5, 1)
_REQUESTS = Counter(
    "http_requests_total",
    "Total number of requests by method, status and handler.",
    labelnames=("method", "status", "handler"),
)
_REQUEST_SIZE = Summary(
    "http_request_size_bytes",
    "Content length of incoming requests by handler. Only value of header is respected. "
    "Otherwise ignored. No percentile calculated. ",
    labelnames=("handler",),
)
_RESPONSE_SIZE = Summary(
    "http_response_size_bytes",
    "Body length of outgoing responses by handler. No percentile calculated.",
    labelnames=("handler",),
)
_LATENCY_HIGHR = Histogram(
    "http_request_duration_highr_seconds",
    "Latency with many buckets but no API specific labels. Made for more accurate "
    "percentile calculations. ",
    buckets=_LATENCY_HIGHR_BUCKETS,
)
_LATENCY_LOWR = Histogram(
    "http_request_duration_seconds",
    "Latency with only few buckets by handler. Made to be only used if aggregation by "
    "handler is important. ",
    labelnames=("method", "handler"),
    buckets=_LATENCY_LOWR_BUCKETS,
)


class HttpMetricsMiddleware:
    """Counts, sizes and times every HTTP answer, by the template of the route that served it.

    In place of prometheus-fastapi-instrumentator, whose metrics these are (same names,
    labels and buckets): it resolved the route by matching the path against every route
    again on each request and built a Request and an Info object around it, which cost
    GET /users/me about a sixth of its throughput in `bench/run`. The router records the
    route it matched in the scope, so that is read after the answer: anything it did not
    match (404, a 429 or 413 answered before routing) is `none`, so a client cannot add
    series by inventing paths. A route of an included router knows its path without the
    prefix; its template (`/api/v1/tasks/{task_id}`) comes from the OpenAPI document, by
    operation id (unique, core/openapi.py), read once.

    The duration ends when the last byte of the answer is sent: a route's background tasks
    run after that, inside the same ASGI call, and the client does not wait for them.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[str, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._templates is None:
            self._templates = _templates_by_operation(scope["app"].openapi())
        started = time.perf_counter()
        finished = 0.0
        status = 500
        response_bytes = 0

        async def send_counting(message: Message) -> None:
            nonlocal finished, status, response_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                response_bytes += len(message.get("body", b""))
                if not message.get("more_body"):
                    await send(message)
                    finished = time.perf_counter()
                    return
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            duration = (finished or time.perf_counter()) - started
            requests, request_size, response_size, latency = _series(
                scope["method"], status, self._handler(scope.get("route"))
            )
            requests.inc()
            request_size.observe(_content_length(scope))
            response_size.observe(response_bytes)
            _LATENCY_HIGHR.observe(duration)
            latency.observe(duration)

    def _handler(self, route: object) -> str:
        if route is None:
            return UNMATCHED_HANDLER
        if isinstance(route, APIRoute):
            template = (self._templates or {}).get(operation_id(route))
            if template is not None:
                return template
        return getattr(route, "path", None) or UNMATCHED_HANDLER


@functools.lru_cache(maxsize=4096)
def _series(method: str, status: int, handler: str) -> tuple[Counter, Summary, Summary, Histogram]:
    """The labelled series one answer counts in, looked up once per label set: `labels()`
    checks and locks on every call, a third of the cost of counting a request."""
    return (
        _REQUESTS.labels(method, str(status), handler),
        _REQUEST_SIZE.labels(handler),
        _RESPONSE_SIZE.labels(handler),
        _LATENCY_LOWR.labels(method, handler),
    )


def _templates_by_operation(openapi: dict[str, Any]) -> dict[str, str]:
    return {
        operation["operationId"]: path
        for path, operations in openapi["paths"].items()
        for operation in operations.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def _content_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def expose_metrics(
    app: FastAPI,
    *,
    before_scrape: Callable[[Request], Awaitable[None]] | None = None,
) -> None:
    """GET /metrics: every metric of this process, or of all workers in multiprocess mode.

    `before_scrape` refreshes gauges read from elsewhere (the job queue, from the database)
    first; if it fails or takes over two seconds the answer carries their last values.
    """

    @app.get(
        METRICS_PATH,
        include_in_schema=False,
        summary="Prometheus metrics (all workers of this instance)",
    )
    async def metrics(request: Request) -> Response:
        if before_scrape is not None:
            try:
                async with asyncio.timeout(BEFORE_SCRAPE_TIMEOUT_SECONDS):
                    await before_scrape(request)
            except Exception as error:
                log.warning("metrics_refresh_failed", error_type=type(error).__name__)
        body = await asyncio.to_thread(generate_latest, _registry())
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client is untyped here
    return registry
