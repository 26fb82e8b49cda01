"""The one check of an error answer, shared by every feature's tests."""

from __future__ import annotations

from typing import Any

import httpx


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with our members, answered like every API response."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert str(body["type"]).endswith(code.replace("_", "-"))
    return body


def field_errors(response: httpx.Response) -> set[str]:
    """The fields a 400 validation problem names."""
    body = assert_problem(response, 400, "validation_error")
    return {error["field"] for error in body["errors"]}
