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
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import cache

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as instrumentator_metrics

from taskapi.core.middleware import RESPONSE_SENT_AT

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


@cache
def _http_metrics() -> Callable[[instrumentator_metrics.Info], None]:
    """The instrumentator's standard HTTP metrics, registered once per process however many
    apps are created (the tests create many)."""
    instrumentation = instrumentator_metrics.default()
    if instrumentation is None:
        raise RuntimeError("HTTP metrics are already registered outside taskapi.core.metrics")
    return instrumentation


def _by_matched_route(info: instrumentator_metrics.Info) -> None:
    """Label by the template of the route that served the request, or `none`, and time the
    response only.

    The instrumentator resolves the template before the request runs and, for a path that
    differs from a route only by a trailing slash, reports the raw path: one new series per
    id a client invents. The router records the route it matched in the scope, so anything
    it did not match (404, a slash redirect, a 429 or 413 answered before routing) is `none`.

    Its duration runs until the app returns, background tasks (FastAPI's BackgroundTasks,
    if a route adds any) included: the time since the response was sent is taken off again.
    """
    if "route" not in info.request.scope:
        info.modified_handler = UNMATCHED_HANDLER
    sent_at = info.request.scope.get("state", {}).get(RESPONSE_SENT_AT)
    if sent_at is not None:
        after_response = time.perf_counter() - sent_at
        info.modified_duration = max(info.modified_duration - after_response, 0.0)
    _http_metrics()(info)


def create_instrumentator() -> Instrumentator:
    return Instrumentator(should_group_status_codes=False).add(_by_matched_route)


def expose_metrics(
    app: FastAPI,
    _instrumentator: Instrumentator,
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
