"""Prometheus metrics: HTTP traffic by route template, plus the counters operators alert on.

Every metric lives in the process-wide default registry, so code without access to the app
(`record_auth_failure`) can count too. With several uvicorn workers `taskapi serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start; prometheus_client
then keeps every value in a file there, and `/metrics` sums all workers' files.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from fastapi import FastAPI
from prometheus_client import Counter
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as instrumentator_metrics

METRICS_PATH = "/metrics"
UNMATCHED_HANDLER = "none"

AUTH_FAILURE_REASONS = frozenset(
    {
        "invalid_credentials",
        "account_locked",
        "invalid_access_token",
        "revoked_access_token",
        "invalid_refresh_token",
        "refresh_token_reuse",
        "invalid_email_token",
        "other",
    }
)
RATE_LIMIT_SCOPES = ("user", "anonymous")

AUTH_FAILURES = Counter(
    "auth_failures_total",
    "Failed authentication attempts, by reason.",
    labelnames=["reason"],
)
RATE_LIMIT_REJECTIONS = Counter(
    "rate_limit_rejections_total",
    "Requests refused with 429 by the rate limiter, by who was limited.",
    labelnames=["scope"],
)
for _reason in AUTH_FAILURE_REASONS:
    AUTH_FAILURES.labels(reason=_reason)
for _scope in RATE_LIMIT_SCOPES:
    RATE_LIMIT_REJECTIONS.labels(scope=_scope)


def record_auth_failure(reason: str) -> None:
    """Count one failed authentication. Unknown reasons count as `other`, so a caller can
    never grow the label set (each label value is a time series Prometheus keeps)."""
    AUTH_FAILURES.labels(reason=reason if reason in AUTH_FAILURE_REASONS else "other").inc()


def record_rate_limit_rejection(scope: str) -> None:
    RATE_LIMIT_REJECTIONS.labels(scope=scope).inc()


@cache
def _http_metrics() -> Callable[[instrumentator_metrics.Info], None]:
    """The instrumentator's standard HTTP metrics, registered once per process however many
    apps are created (the tests create many)."""
    instrumentation = instrumentator_metrics.default()
    if instrumentation is None:
        raise RuntimeError("HTTP metrics are already registered outside taskapi.core.metrics")
    return instrumentation


def _by_matched_route(info: instrumentator_metrics.Info) -> None:
    """Label by the template of the route that served the request, or `none`.

    The instrumentator resolves the template before the request runs and, for a path that
    differs from a route only by a trailing slash, reports the raw path: one new series per
    id a client invents. The router records the route it matched in the scope, so anything
    it did not match (404, a slash redirect, a 429 or 413 answered before routing) is `none`.
    """
    if "route" not in info.request.scope:
        info.modified_handler = UNMATCHED_HANDLER
    _http_metrics()(info)


def create_instrumentator() -> Instrumentator:
    return Instrumentator(should_group_status_codes=False).add(_by_matched_route)


def expose_metrics(app: FastAPI, instrumentator: Instrumentator) -> None:
    instrumentator.expose(
        app,
        endpoint=METRICS_PATH,
        include_in_schema=False,
        summary="Prometheus metrics (all workers of this instance)",
    )
