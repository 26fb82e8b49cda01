"""Request headers are capped before anything reads them: 16 KiB in all, 4 KiB of
Authorization, or 431 (issue 17: a 16 MB bearer cost a second of event loop even when the
answer was 429, because the rate limiter verified it first)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskapi.core import ratelimit
from taskapi.core.config import Settings
from taskapi.core.middleware import MAX_AUTHORIZATION_BYTES, MAX_HEADER_BYTES
from tests.support.apps import SECURITY_HEADERS, SettingsFactory, make_client
from tests.support.problems import assert_problem
from tests.support.processes import ServeFactory

HEADER_OVERHEAD = 4
"""": " and CRLF, counted with each header as it was sent."""


def _bearer_of_length(length: int) -> dict[str, str]:
    token = "eyJ" + "a" * (length - len("Bearer eyJ"))
    return {"Authorization": f"Bearer {token}"}


def _assert_431(response: httpx.Response) -> None:
    body = assert_problem(response, 431, "request_headers_too_large")
    assert "bytes" in body["detail"]
    assert response.headers["connection"] == "close"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


@pytest.fixture
async def limited_app(
    make_settings: SettingsFactory, app_factory: Callable[[Settings], Any]
) -> Any:
    return await app_factory(
        make_settings(enable_rate_limiting=True, rate_limit_anonymous_per_minute=3)
    )


async def test_an_authorization_header_over_4_kib_is_431_without_being_decoded(
    limited_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_decode(**_kwargs: Any) -> Any:
        raise AssertionError("an oversized token was decoded")

    monkeypatch.setattr(ratelimit, "decode_access_token", must_not_decode)
    async with make_client(limited_app) as client:
        for path in ("/api/v1/tasks", "/api/v1/auth/forgot-password", "/health/live"):
            response = await client.get(
                path, headers=_bearer_of_length(MAX_AUTHORIZATION_BYTES + 1)
            )
            _assert_431(response)
            assert "ratelimit-limit" not in response.headers


async def test_an_authorization_header_of_4_kib_is_still_read(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/users/me", headers=_bearer_of_length(MAX_AUTHORIZATION_BYTES)
    )
    assert_problem(response, 401, "not_authenticated")


async def test_headers_over_16_kib_in_all_are_431(client: httpx.AsyncClient) -> None:
    padding = MAX_HEADER_BYTES - 3000
    headers = {"X-Padding-1": "p" * padding, "X-Padding-2": "p" * 3000}
    _assert_431(await client.get("/health/live", headers=headers))
    _assert_431(await client.post("/api/v1/auth/login", json={}, headers=headers))


async def test_headers_just_under_16_kib_pass(client: httpx.AsyncClient) -> None:
    # httpx adds host, accept, accept-encoding, connection and user-agent: well under 1 KiB.
    padding = MAX_HEADER_BYTES - 1024 - len("x-padding") - HEADER_OVERHEAD
    response = await client.get("/health/live", headers={"X-Padding": "p" * padding})
    assert response.status_code == 200


async def test_behind_uvicorn_a_huge_bearer_gets_our_431(serve: ServeFactory) -> None:
    """uvicorn with httptools sets no header limit of its own: the 1 MB header reaches the
    app, which refuses it before the rate limiter decodes it (docs: what it still costs)."""
    server = serve({"ENABLE_RATE_LIMITING": "true", "RATE_LIMIT_ANONYMOUS_PER_MINUTE": "1000"})
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        for _ in range(3):
            response = await client.post(
                "/api/v1/auth/forgot-password",
                json={"email": "a@example.com"},
                headers=_bearer_of_length(1024 * 1024),
            )
            assert response.status_code == 431
            assert response.json()["code"] == "request_headers_too_large"
        assert (await client.get("/health/live")).status_code == 200
