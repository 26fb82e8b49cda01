"""NUL in any text an auth route takes is a 4xx, never the 500 of PostgreSQL's driver
(its text type cannot hold the character). Passwords are the exception by design: they
are hashed, never stored, and any Unicode works (tests/auth/test_router.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.factories import DEFAULT_PASSWORD, SignedIn

API = "/api/v1"
NUL_EMAIL = "nul\x00byte@example.com"
NUL_TOKEN = "0" * 31 + "\x00" + "0" * 32


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (
            "/auth/register",
            {"email": NUL_EMAIL, "password": DEFAULT_PASSWORD, "full_name": "N"},
            400,
        ),
        (
            "/auth/register",
            {"email": "n@example.com", "password": DEFAULT_PASSWORD, "full_name": "a\x00b"},
            400,
        ),
        ("/auth/login", {"email": NUL_EMAIL, "password": DEFAULT_PASSWORD}, 400),
        ("/auth/resend-verification", {"email": NUL_EMAIL}, 400),
        ("/auth/forgot-password", {"email": NUL_EMAIL}, 400),
        ("/auth/verify-email", {"token": NUL_TOKEN}, 400),
        ("/auth/reset-password", {"token": NUL_TOKEN, "new_password": DEFAULT_PASSWORD}, 400),
        ("/auth/refresh", {"refresh_token": NUL_TOKEN}, 401),
    ],
)
async def test_nul_in_an_auth_body_is_refused(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int
) -> None:
    response = await client.post(f"{API}{path}", json=body)
    assert response.status_code == status, response.text


async def test_nul_in_the_form_login_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/login", data={"username": NUL_EMAIL, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 400, response.text


async def test_nul_in_a_signed_in_users_body_is_refused(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    logout = await client.post(
        f"{API}/auth/logout", json={"refresh_token": NUL_TOKEN}, headers=alice.headers
    )
    assert logout.status_code in {204, 400}, logout.text
    renamed = await client.patch(
        f"{API}/users/me", json={"full_name": "a\x00b"}, headers=alice.headers
    )
    assert renamed.status_code == 400, renamed.text
