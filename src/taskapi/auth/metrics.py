"""`auth_failures_total{reason}`: every refused authentication, by the reason that refused it."""

from __future__ import annotations

from taskapi.core.metrics import BoundedCounter

AUTH_FAILURE_REASONS = frozenset(
    {
        "invalid_credentials",
        "account_locked",
        "invalid_access_token",
        "revoked_access_token",
        "invalid_personal_token",
        "invalid_refresh_token",
        "refresh_token_reuse",
        "invalid_email_token",
        "other",
    }
)

AUTH_FAILURES = BoundedCounter(
    "auth_failures_total",
    "Failed authentication attempts, by reason.",
    label="reason",
    values=AUTH_FAILURE_REASONS,
    fallback="other",
)


def record_auth_failure(reason: str) -> None:
    """Count one failed authentication; an unknown reason counts as `other`."""
    AUTH_FAILURES.inc(reason)
