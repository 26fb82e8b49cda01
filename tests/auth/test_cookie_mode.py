"""The refresh token as an HttpOnly cookie for browsers (`X-Token-Transport: cookie`),
and the JSON token API unchanged without that header (DESIGN §7.1)."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.cookies import REFRESH_COOKIE
from taskapi.core.config import Settings
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.auth import (
    API,
    STRONG_PASSWORD,
    TOKEN_FIELDS,
    bearer,
    register,
    stored_refresh_tokens,
    stored_token,
    stored_user,
)
from tests.support.problems import assert_problem, field_errors

COOKIE_MODE = {"X-Token-Transport": "cookie"}
EMAIL = "ada@example.com"
COOKIE_PATH = f"{API}/auth"


def refresh_cookie(response: httpx.Response) -> SimpleCookie:
    """The Set-Cookie of the refresh cookie, parsed with its attributes."""
    [header] = [
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith(f"{REFRESH_COOKIE}=")
    ]
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie


async def cookie_login(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.post(
        f"{API}/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD}, headers=COOKIE_MODE
    )
    assert response.status_code == 200, response.text
    return response


async def test_login_in_cookie_mode_sets_a_strict_httponly_cookie_and_no_body_token(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    await register(client, email=EMAIL)

    response = await cookie_login(client)

    body = response.json()
    assert set(body) == TOKEN_FIELDS
    assert body["refresh_token"] is None
    assert body["access_token"]
    morsel = refresh_cookie(response)[REFRESH_COOKIE]
    assert len(morsel.value) == 64
    assert morsel["path"] == COOKIE_PATH
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["secure"] == ""  # plain http in development and tests
    assert int(morsel["max-age"]) == settings.refresh_token_expire_days * 86_400
    user = await stored_user(session, EMAIL)
    assert user is not None
    stored = await stored_token(session, morsel.value)
    assert stored.user_id == user.id
    assert stored.revoked_at is None
    # The access token works like any other.
    me = await client.get(f"{API}/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200


async def test_register_in_cookie_mode_sets_the_cookie(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/register",
        json={"email": EMAIL, "password": STRONG_PASSWORD, "full_name": "Ada"},
        headers=COOKIE_MODE,
    )

    assert response.status_code == 201, response.text
    assert response.json()["refresh_token"] is None
    assert len(refresh_cookie(response)[REFRESH_COOKIE].value) == 64


async def test_the_cookie_is_secure_in_production(
    app_factory: AppFactory, make_settings: SettingsFactory
) -> None:
    app: FastAPI = await app_factory(
        make_settings(app_env="production", jwt_secret_key="p" * 40, email_backend="console")
    )
    async with make_client(app) as client:
        await register(client, email=EMAIL)
        response = await cookie_login(client)

    assert refresh_cookie(response)[REFRESH_COOKIE]["secure"] is True


async def test_refresh_with_the_cookie_rotates_it(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await register(client, email=EMAIL)
    first = refresh_cookie(await cookie_login(client))[REFRESH_COOKIE].value

    response = await client.post(f"{API}/auth/refresh", headers=COOKIE_MODE)

    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"] is None
    second = refresh_cookie(response)[REFRESH_COOKIE].value
    assert second != first
    assert (await stored_token(session, first)).revoked_at is not None
    assert (await stored_token(session, second)).revoked_at is None
    # The client's jar now holds the new cookie: the next refresh rotates again.
    again = await client.post(f"{API}/auth/refresh", headers=COOKIE_MODE)
    assert again.status_code == 200, again.text


async def test_the_cookie_is_ignored_without_the_header(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A cross-site form can send the cookie but not the header: it gets nowhere."""
    await register(client, email=EMAIL)
    token = refresh_cookie(await cookie_login(client))[REFRESH_COOKIE].value

    no_header = await client.post(f"{API}/auth/refresh")
    form_post = await client.post(
        f"{API}/auth/refresh",
        content=b"refresh_token=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert field_errors(no_header) == {"body"}
    assert_problem(form_post, 400, "validation_error")
    assert not no_header.headers.get_list("set-cookie")
    assert (await stored_token(session, token)).revoked_at is None


async def test_an_unknown_header_value_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/refresh", headers={"X-Token-Transport": "body"}, json={"refresh_token": "x"}
    )

    assert field_errors(response) == {"X-Token-Transport"}


async def test_refresh_without_a_cookie_is_401_and_deletes_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(f"{API}/auth/refresh", headers=COOKIE_MODE)

    assert_problem(response, 401, "invalid_refresh_token")
    morsel = refresh_cookie(response)[REFRESH_COOKIE]
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert morsel["path"] == COOKIE_PATH


async def test_reusing_a_rotated_cookie_ends_the_session_and_deletes_the_cookie(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Another tab rotated the token; an old copy presented again ends the whole family."""
    await register(client, email=EMAIL)
    old = refresh_cookie(await cookie_login(client))[REFRESH_COOKIE].value
    rotated = await client.post(f"{API}/auth/refresh", headers=COOKIE_MODE)
    successor = refresh_cookie(rotated)[REFRESH_COOKIE].value

    client.cookies.set(REFRESH_COOKIE, old, path=COOKIE_PATH)
    reused = await client.post(f"{API}/auth/refresh", headers=COOKIE_MODE)

    assert_problem(reused, 401, "invalid_refresh_token")
    assert refresh_cookie(reused)[REFRESH_COOKIE]["max-age"] == "0"
    assert (await stored_token(session, successor)).revoked_at is not None


async def test_a_body_token_is_still_used_in_cookie_mode(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tokens = await register(client, email=EMAIL)

    response = await client.post(
        f"{API}/auth/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        headers=COOKIE_MODE,
    )

    assert response.status_code == 200, response.text
    assert (await stored_token(session, tokens["refresh_token"])).revoked_at is not None
    assert len(refresh_cookie(response)[REFRESH_COOKIE].value) == 64


async def test_logout_with_the_cookie_ends_that_session_and_deletes_the_cookie(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await register(client, email=EMAIL)
    login = await cookie_login(client)
    token = refresh_cookie(login)[REFRESH_COOKIE].value

    response = await client.post(
        f"{API}/auth/logout",
        headers={**COOKIE_MODE, **bearer(login.json()["access_token"])},
    )

    assert response.status_code == 204, response.text
    assert refresh_cookie(response)[REFRESH_COOKIE]["max-age"] == "0"
    assert (await stored_token(session, token)).revoked_at is not None


async def test_logout_without_the_header_ignores_the_cookie(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await register(client, email=EMAIL)
    login = await cookie_login(client)
    token = refresh_cookie(login)[REFRESH_COOKIE].value

    response = await client.post(f"{API}/auth/logout", headers=bearer(login.json()["access_token"]))

    assert field_errors(response) == {"body"}
    assert (await stored_token(session, token)).revoked_at is None


async def test_logout_all_in_cookie_mode_deletes_the_cookie(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await register(client, email=EMAIL)
    login = await cookie_login(client)

    response = await client.post(
        f"{API}/auth/logout-all",
        headers={**COOKIE_MODE, **bearer(login.json()["access_token"])},
    )

    assert response.status_code == 204, response.text
    assert refresh_cookie(response)[REFRESH_COOKIE]["max-age"] == "0"
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert all(row.revoked_at is not None for row in await stored_refresh_tokens(session, user.id))


async def test_without_the_header_the_token_api_is_unchanged(
    client: httpx.AsyncClient,
) -> None:
    tokens = await register(client, email=EMAIL)
    login = await client.post(
        f"{API}/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD}
    )
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )

    for response in (login, refreshed):
        assert response.status_code == 200, response.text
        assert len(response.json()["refresh_token"]) == 64
        assert not response.headers.get_list("set-cookie")
    assert len(tokens["refresh_token"]) == 64
    assert REFRESH_COOKIE not in client.cookies


async def test_a_null_body_is_refused_in_cookie_mode_too(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await register(client, email=EMAIL)
    login = await cookie_login(client)
    token = refresh_cookie(login)[REFRESH_COOKIE].value
    headers = {**COOKIE_MODE, **bearer(login.json()["access_token"])}

    for path in ("refresh", "logout"):
        response = await client.post(
            f"{API}/auth/{path}",
            content=b"null",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert field_errors(response) == {"body"}
    assert (await stored_token(session, token)).revoked_at is None
