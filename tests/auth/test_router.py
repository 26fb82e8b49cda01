"""The /auth endpoints over HTTP, with what each one stored."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.security import hash_token
from tests.support.auth import (
    API,
    OTHER_PASSWORD,
    STRONG_PASSWORD,
    TOKEN_FIELDS,
    USER_FIELDS,
    CountingHasher,
    Mailbox,
    bearer,
    change_user,
    login,
    register,
    stored_password_hash,
    stored_refresh_tokens,
    stored_token,
    stored_user,
)
from tests.support.factories import DEFAULT_PASSWORD, create_user
from tests.support.problems import assert_problem, field_errors

EMAIL = "ada@example.com"


def assert_token_response(response: httpx.Response, settings: Settings) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert set(body) == TOKEN_FIELDS
    assert set(body["user"]) == USER_FIELDS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_expire_minutes * 60
    assert len(body["refresh_token"]) == 64
    int(body["refresh_token"], 16)
    return body


def access_claims(token: str, settings: Settings) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, settings.secret_key, algorithms=["HS256"], audience=settings.jwt_audience
    )
    return claims


def close_to(value: datetime | None, expected: datetime, tolerance: float = 60) -> bool:
    return value is not None and abs((value - expected).total_seconds()) < tolerance


# --- POST /auth/register ---------------------------------------------------------------


async def test_register_signs_in_an_inactive_account_and_emails_a_link(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, mailbox: Mailbox
) -> None:
    response = await client.post(
        f"{API}/auth/register",
        json={"email": "Ada.L@Example.COM", "password": STRONG_PASSWORD, "full_name": "  Ada  "},
    )
    assert response.status_code == 201
    body = assert_token_response(response, settings)
    assert body["user"]["email"] == "ada.l@example.com"
    assert body["user"]["full_name"] == "Ada"
    assert body["user"]["is_active"] is False

    user = await stored_user(session, "ada.l@example.com")
    assert user is not None
    assert str(user.id) == body["user"]["id"]
    assert user.is_active is False
    assert user.password_hash.startswith("$argon2id$")
    assert STRONG_PASSWORD not in user.password_hash
    token = await mailbox.token("ada.l@example.com", "verify-email")
    assert user.email_verification_token_hash == hash_token(token)
    assert close_to(user.email_verification_expires_at, datetime.now(UTC) + timedelta(hours=24))

    [row] = await stored_refresh_tokens(session, user.id)
    assert row.token_hash == hash_token(body["refresh_token"])
    assert row.revoked_at is None
    assert close_to(row.expires_at, datetime.now(UTC) + timedelta(days=7))
    claims = access_claims(body["access_token"], settings)
    assert claims["sub"] == str(user.id)
    assert claims["sid"] == str(row.family_id)
    assert claims["email"] == "ada.l@example.com"

    me = await client.get(f"{API}/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == body["user"]


async def test_register_taken_email_is_409_in_any_case(
    client: httpx.AsyncClient, session: AsyncSession, counting_hasher: CountingHasher
) -> None:
    await register(client, email="ada@example.com")
    response = await client.post(
        f"{API}/auth/register",
        json={"email": "ADA@example.com", "password": OTHER_PASSWORD, "full_name": "Other"},
    )
    assert_problem(response, 409, "email_taken")
    user = await stored_user(session, "ada@example.com")
    assert user is not None
    assert user.full_name == "Ada Lovelace"


async def test_concurrent_registrations_of_one_email_give_201_and_409(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    payload = {"email": "race@example.com", "password": STRONG_PASSWORD, "full_name": "Race"}
    responses = await asyncio.gather(
        *(client.post(f"{API}/auth/register", json=payload) for _ in range(2))
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert_problem(loser, 409, "email_taken")
    assert await stored_user(session, "race@example.com") is not None


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Sh0rt!", "at least 8 characters"),
        ("nouppercase1!", "an uppercase letter"),
        ("NoDigitsHere!", "a digit"),
        ("NoSpecial123", "one of !@#$%^&*"),
        ("A1!" + "a" * 126, "at most 128 characters"),
        ("alllowercase", "an uppercase letter, a digit, one of !@#$%^&*"),
    ],
)
async def test_register_weak_password_is_a_field_error(
    client: httpx.AsyncClient, session: AsyncSession, password: str, message: str
) -> None:
    response = await client.post(
        f"{API}/auth/register",
        json={"email": EMAIL, "password": password, "full_name": "Ada"},
    )
    body = assert_problem(response, 400, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["password"]
    assert message in body["errors"][0]["message"]
    assert await stored_user(session, EMAIL) is None


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"password": STRONG_PASSWORD, "full_name": "Ada"}, {"email"}),
        ({"email": EMAIL, "full_name": "Ada"}, {"password"}),
        ({"email": EMAIL, "password": STRONG_PASSWORD}, {"full_name"}),
        ({}, {"email", "password", "full_name"}),
        ({"email": "not-an-email", "password": STRONG_PASSWORD, "full_name": "Ada"}, {"email"}),
        ({"email": 42, "password": STRONG_PASSWORD, "full_name": "Ada"}, {"email"}),
        ({"email": EMAIL, "password": ["Str0ng!Passw0rd"], "full_name": "Ada"}, {"password"}),
        ({"email": EMAIL, "password": 12345678, "full_name": "Ada"}, {"password"}),
        ({"email": EMAIL, "password": STRONG_PASSWORD, "full_name": None}, {"full_name"}),
        ({"email": EMAIL, "password": STRONG_PASSWORD, "full_name": "   "}, {"full_name"}),
        ({"email": EMAIL, "password": STRONG_PASSWORD, "full_name": "x" * 201}, {"full_name"}),
    ],
)
async def test_register_bad_input_is_400_per_field(
    client: httpx.AsyncClient, session: AsyncSession, payload: dict[str, Any], fields: set[str]
) -> None:
    response = await client.post(f"{API}/auth/register", json=payload)
    assert field_errors(response) == fields
    assert await stored_user(session, EMAIL) is None


async def test_register_ignores_unknown_fields(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post(
        f"{API}/auth/register",
        json={
            "email": EMAIL,
            "password": STRONG_PASSWORD,
            "full_name": "Ada",
            "is_active": True,
            "password_hash": "x",
        },
    )
    assert response.status_code == 201
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.is_active is False
    assert user.password_hash.startswith("$argon2id$")


async def test_register_full_name_of_200_characters_is_fine(client: httpx.AsyncClient) -> None:
    body = await register(client, full_name=" " + "x" * 200 + " ")
    assert body["user"]["full_name"] == "x" * 200


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    for path in ("register", "login", "refresh", "verify-email", "forgot-password"):
        response = await client.post(
            f"{API}/auth/{path}",
            content=b'{"email": "ada@example.com",',
            headers={"content-type": "application/json"},
        )
        assert_problem(response, 400, "invalid_json")


async def test_megabyte_password_is_400_without_hashing(
    client: httpx.AsyncClient, session: AsyncSession, counting_hasher: CountingHasher
) -> None:
    huge = "A1!" + "a" * 1_000_000
    for path, payload in [
        ("register", {"email": EMAIL, "password": huge, "full_name": "Ada"}),
        ("login", {"email": EMAIL, "password": huge}),
        ("reset-password", {"token": "0" * 64, "new_password": huge}),
    ]:
        response = await client.post(f"{API}/auth/{path}", json=payload)
        assert "password" in next(iter(field_errors(response)))
    assert (counting_hasher.hashes, counting_hasher.verifications) == (0, 0)
    assert counting_hasher.dummy_verifications == 0
    assert await stored_user(session, EMAIL) is None


@pytest.mark.parametrize(
    "password", ["Pässwörd1!Ü", "Emoji🔐Pass1!", "With\x00Nul1!A", "日本語のパスワードA1!"]
)
async def test_any_unicode_password_works(client: httpx.AsyncClient, password: str) -> None:
    await register(client, password=password)
    assert (await login(client, password=password)).status_code == 200
    assert_problem(await login(client, password=password[:-1]), 401, "invalid_credentials")


async def test_nul_does_not_truncate_the_password(client: httpx.AsyncClient) -> None:
    await register(client, password="Before1!\x00After")
    assert_problem(await login(client, password="Before1!"), 401, "invalid_credentials")
    assert (await login(client, password="Before1!\x00After")).status_code == 200


# --- POST /auth/verify-email -----------------------------------------------------------


async def test_verify_email_activates_once(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    registered = await register(client)
    token = await mailbox.token(EMAIL, "verify-email")

    response = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["id"] == registered["user"]["id"]
    assert body["is_active"] is True
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.is_active is True
    assert user.email_verification_token_hash is None
    assert user.email_verification_expires_at is None

    again = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert_problem(again, 400, "invalid_token")


async def test_verify_email_expired_or_unknown_token_is_400(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    await register(client)
    token = await mailbox.token(EMAIL, "verify-email")
    await change_user(
        session, EMAIL, email_verification_expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    for candidate in (token, "f" * 64, "not-hex"):
        response = await client.post(f"{API}/auth/verify-email", json={"token": candidate})
        assert_problem(response, 400, "invalid_token")
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.is_active is False


async def test_verify_email_bad_input(client: httpx.AsyncClient) -> None:
    assert field_errors(await client.post(f"{API}/auth/verify-email", json={})) == {"token"}
    assert field_errors(await client.post(f"{API}/auth/verify-email", json={"token": ""})) == {
        "token"
    }
    assert field_errors(await client.post(f"{API}/auth/verify-email", json={"token": 7})) == {
        "token"
    }


# --- POST /auth/resend-verification --------------------------------------------------------


async def test_resend_verification_replaces_the_token(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    await register(client)
    first = await mailbox.token(EMAIL, "verify-email")

    response = await client.post(
        f"{API}/auth/resend-verification", json={"email": "ADA@Example.com"}
    )
    assert response.status_code == 202
    assert response.headers["cache-control"] == "no-store"
    second = await mailbox.token(EMAIL, "verify-email")
    assert second != first
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.email_verification_token_hash == hash_token(second)

    stale = await client.post(f"{API}/auth/verify-email", json={"token": first})
    assert_problem(stale, 400, "invalid_token")
    assert (
        await client.post(f"{API}/auth/verify-email", json={"token": second})
    ).status_code == 200


async def test_resend_verification_answers_alike_for_unknown_and_verified_addresses(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    await register(client)
    assert len(await mailbox.messages(EMAIL)) == 1
    await create_user(session, email="done@example.com", is_active=True)
    answers = [
        await client.post(f"{API}/auth/resend-verification", json={"email": email})
        for email in (EMAIL, "nobody@example.com", "done@example.com")
    ]
    assert {r.status_code for r in answers} == {202}
    assert len({r.content for r in answers}) == 1
    assert len(await mailbox.messages(EMAIL)) == 2
    assert await mailbox.messages("nobody@example.com") == []
    assert await mailbox.messages("done@example.com") == []


async def test_resend_verification_bad_email_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/auth/resend-verification", json={"email": "nope"})
    assert field_errors(response) == {"email"}


# --- POST /auth/login ------------------------------------------------------------------


async def test_login_json_starts_a_new_session(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    registered = await register(client)
    response = await login(client, email="Ada@EXAMPLE.com")
    body = assert_token_response(response, settings)
    assert body["user"] == registered["user"]
    user = await stored_user(session, EMAIL)
    assert user is not None
    first, second = await stored_refresh_tokens(session, user.id)
    assert second.token_hash == hash_token(body["refresh_token"])
    assert second.family_id != first.family_id
    assert access_claims(body["access_token"], settings)["sid"] == str(second.family_id)
    assert (await client.get(f"{API}/users/me", headers=bearer(body["access_token"]))).json()[
        "id"
    ] == str(user.id)


@pytest.mark.parametrize("path", ["/auth/token", "/auth/login"])
async def test_login_oauth2_form_as_swagger_sends_it(
    client: httpx.AsyncClient, settings: Settings, path: str
) -> None:
    """/auth/token is where the form is documented; /auth/login takes it too, as it did
    before /auth/token existed."""
    await register(client)
    form = {"grant_type": "password", "username": "ADA@example.com", "password": STRONG_PASSWORD}
    response = await client.post(f"{API}{path}", data={**form, "scope": ""})
    assert_token_response(response, settings)
    multipart = await client.post(
        f"{API}{path}", files={key: (None, value) for key, value in form.items()}
    )
    assert_token_response(multipart, settings)
    wrong = await client.post(f"{API}{path}", data={**form, "password": "Wr0ng!pass"})
    assert_problem(wrong, 401, "invalid_credentials")


async def test_login_bad_input(client: httpx.AsyncClient) -> None:
    assert field_errors(await client.post(f"{API}/auth/login", json={"email": EMAIL})) == {
        "password"
    }
    assert field_errors(await client.post(f"{API}/auth/login", data={"password": "x"})) == {
        "username"
    }
    assert field_errors(
        await client.post(f"{API}/auth/login", json={"email": ["a"], "password": 1})
    ) == {"email", "password"}
    assert field_errors(await client.post(f"{API}/auth/login", json=[1, 2])) == {"body"}
    assert field_errors(
        await client.post(f"{API}/auth/login", content=b"", headers={"content-type": "text/plain"})
    ) == {"body"}
    assert field_errors(
        await client.post(f"{API}/auth/login", data={"username": EMAIL, "password": "", "x": "1"})
    ) == {"password"}


async def test_unknown_email_and_wrong_password_get_the_same_401(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await create_user(session, email=EMAIL)
    wrong = await login(client, password="Wr0ng!Passw0rd")
    unknown = await login(client, email="nobody@example.com", password="Wr0ng!Passw0rd")
    for response in (wrong, unknown):
        assert_problem(response, 401, "invalid_credentials")
        assert response.headers["www-authenticate"] == "Bearer"

    def without_request_id(response: httpx.Response) -> dict[str, Any]:
        return {k: v for k, v in response.json().items() if k != "request_id"}

    assert without_request_id(wrong) == without_request_id(unknown)
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.failed_login_attempts == 1


async def test_login_runs_one_argon2_verification_whether_or_not_the_email_exists(
    client: httpx.AsyncClient, session: AsyncSession, counting_hasher: CountingHasher
) -> None:
    await create_user(session, email=EMAIL)
    await login(client, email="nobody@example.com", password=DEFAULT_PASSWORD)
    assert counting_hasher.dummy_verifications == 1
    assert counting_hasher.verifications == 1  # the dummy check is a real verification
    await login(client, password="Wr0ng!Passw0rd")
    assert counting_hasher.verifications == 2
    assert counting_hasher.dummy_verifications == 1
    assert (await login(client, password=DEFAULT_PASSWORD)).status_code == 200
    assert counting_hasher.verifications == 3


async def test_login_works_for_an_unverified_account(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await login(client)
    assert response.status_code == 200
    assert response.json()["user"]["is_active"] is False


async def test_five_failures_lock_the_account_and_the_fifth_already_says_so(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await create_user(session, email=EMAIL)
    for attempt in range(1, 5):
        assert_problem(await login(client, password="Wr0ng!Passw0rd"), 401, "invalid_credentials")
        user = await stored_user(session, EMAIL)
        assert user is not None
        assert (user.failed_login_attempts, user.locked_until) == (attempt, None)

    fifth = await login(client, password="Wr0ng!Passw0rd")
    body = assert_problem(fifth, 403, "account_locked")
    locked_until = datetime.fromisoformat(body["locked_until"])
    assert locked_until.tzinfo is not None
    assert close_to(locked_until, datetime.now(UTC) + timedelta(minutes=15))
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.failed_login_attempts == 5
    assert user.locked_until == locked_until

    right_password = await login(client, password=DEFAULT_PASSWORD)
    assert (
        assert_problem(right_password, 403, "account_locked")["locked_until"]
        == (body["locked_until"])
    )
    assert_problem(await login(client, password="Wr0ng!Passw0rd"), 403, "account_locked")
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert (user.failed_login_attempts, user.locked_until) == (5, locked_until)
    assert await stored_refresh_tokens(session, user.id) == []


async def test_counting_restarts_after_the_lock_expires(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await create_user(session, email=EMAIL)
    await change_user(
        session,
        EMAIL,
        failed_login_attempts=5,
        locked_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert_problem(await login(client, password="Wr0ng!Passw0rd"), 401, "invalid_credentials")
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert (user.failed_login_attempts, user.locked_until) == (1, None)

    assert (await login(client, password=DEFAULT_PASSWORD)).status_code == 200
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert (user.failed_login_attempts, user.locked_until) == (0, None)


async def test_a_success_resets_the_count(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await create_user(session, email=EMAIL)
    for _ in range(4):
        await login(client, password="Wr0ng!Passw0rd")
    assert (await login(client, password=DEFAULT_PASSWORD)).status_code == 200
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.failed_login_attempts == 0
    for _ in range(4):
        assert_problem(await login(client, password="Wr0ng!Passw0rd"), 401, "invalid_credentials")


async def test_concurrent_failures_all_count(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await create_user(session, email=EMAIL)
    responses = await asyncio.gather(*(login(client, password="Wr0ng!Passw0rd") for _ in range(7)))
    assert sorted(r.status_code for r in responses) == [401] * 4 + [403] * 3
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.failed_login_attempts == 5
    assert user.locked_until is not None


async def test_login_is_documented_for_json_and_the_oauth2_form(
    client: httpx.AsyncClient,
) -> None:
    """One named schema per media type, each on its own operation (generators make one
    model each); the Authorize button of /docs posts the form to /auth/token."""
    schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    for path, media_type, required in [
        ("login", "application/json", {"email", "password"}),
        ("token", "application/x-www-form-urlencoded", {"username", "password"}),
    ]:
        operation = schema["paths"][f"/api/v1/auth/{path}"]["post"]
        content = operation["requestBody"]["content"]
        assert list(content) == [media_type]
        name = content[media_type]["schema"]["$ref"].rsplit("/")[-1]
        assert set(components[name]["required"]) == required
        assert {"400", "401", "403"} <= set(operation["responses"])
    schemes = schema["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == (
        "/api/v1/auth/token"
    )


# --- POST /auth/refresh ----------------------------------------------------------------


async def test_refresh_rotates_the_pair_within_the_session(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    registered = await register(client)
    old = registered["refresh_token"]
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": old})
    body = assert_token_response(response, settings)
    assert body["refresh_token"] != old
    assert body["access_token"] != registered["access_token"]

    old_row = await stored_token(session, old)
    new_row = await stored_token(session, body["refresh_token"])
    assert old_row.revoked_at is not None
    assert new_row.revoked_at is None
    assert new_row.family_id == old_row.family_id
    assert access_claims(body["access_token"], settings)["sid"] == str(new_row.family_id)
    assert (
        await client.get(f"{API}/users/me", headers=bearer(body["access_token"]))
    ).status_code == (200)


async def test_reusing_a_rotated_token_ends_the_whole_session(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    other_session = (await login(client)).json()["refresh_token"]
    old = registered["refresh_token"]
    rotated = (await client.post(f"{API}/auth/refresh", json={"refresh_token": old})).json()

    with capture_logs() as logs:
        reuse = await client.post(f"{API}/auth/refresh", json={"refresh_token": old})
    assert_problem(reuse, 401, "invalid_refresh_token")
    warnings = [entry for entry in logs if entry["event"] == "refresh_token_reuse"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["user_id"] == registered["user"]["id"]
    assert old not in str(logs)
    assert hash_token(old) not in str(logs)

    assert (await stored_token(session, rotated["refresh_token"])).revoked_at is not None
    successor = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert_problem(successor, 401, "invalid_refresh_token")
    assert (await stored_token(session, other_session)).revoked_at is None
    other = await client.post(f"{API}/auth/refresh", json={"refresh_token": other_session})
    assert other.status_code == 200


@pytest.mark.parametrize("contenders", [2, 5])
async def test_concurrent_refreshes_with_one_token_have_one_winner(
    client: httpx.AsyncClient, session: AsyncSession, contenders: int
) -> None:
    registered = await register(client)
    token = registered["refresh_token"]
    responses = await asyncio.gather(
        *(
            client.post(f"{API}/auth/refresh", json={"refresh_token": token})
            for _ in range(contenders)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * (contenders - 1)
    user_id = registered["user"]["id"]
    rows = await stored_refresh_tokens(session, uuid.UUID(user_id))
    assert len(rows) == 2  # the original and exactly one successor
    assert (await stored_token(session, token)).revoked_at is not None


async def test_refresh_expired_unknown_or_revoked_token_is_401(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    expired = registered["refresh_token"]
    live = (await login(client)).json()["refresh_token"]
    row = await stored_token(session, expired)
    row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await session.commit()

    for token in (expired, "0" * 64, "garbage"):
        response = await client.post(f"{API}/auth/refresh", json={"refresh_token": token})
        assert_problem(response, 401, "invalid_refresh_token")
    # Expiry is not reuse: the other session is untouched.
    assert (await stored_token(session, live)).revoked_at is None
    assert (await stored_token(session, expired)).revoked_at is None


async def test_refresh_token_older_than_tokens_valid_after_is_401(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    await change_user(session, EMAIL, tokens_valid_after=datetime.now(UTC) + timedelta(seconds=1))
    response = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert_problem(response, 401, "invalid_refresh_token")


async def test_refresh_bad_input(client: httpx.AsyncClient) -> None:
    assert field_errors(await client.post(f"{API}/auth/refresh", json={})) == {"refresh_token"}
    assert field_errors(
        await client.post(f"{API}/auth/refresh", json={"refresh_token": "x" * 257})
    ) == {"refresh_token"}


# --- POST /auth/logout, /auth/logout-all -------------------------------------------------


async def test_logout_ends_that_session_only(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    rotated = (
        await client.post(
            f"{API}/auth/refresh", json={"refresh_token": registered["refresh_token"]}
        )
    ).json()
    other = (await login(client)).json()

    response = await client.post(
        f"{API}/auth/logout",
        json={"refresh_token": rotated["refresh_token"]},
        headers=bearer(rotated["access_token"]),
    )
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"

    family = (await stored_token(session, rotated["refresh_token"])).family_id
    rows = await stored_refresh_tokens(session, uuid.UUID(registered["user"]["id"]))
    assert all(row.revoked_at is not None for row in rows if row.family_id == family)
    assert (await stored_token(session, other["refresh_token"])).revoked_at is None
    assert_problem(
        await client.post(f"{API}/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
        401,
        "invalid_refresh_token",
    )


async def test_logout_with_someone_elses_token_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    mine = await register(client)
    theirs = await register(client, email="eve@example.com")
    response = await client.post(
        f"{API}/auth/logout",
        json={"refresh_token": theirs["refresh_token"]},
        headers=bearer(mine["access_token"]),
    )
    assert response.status_code == 204
    assert (await stored_token(session, theirs["refresh_token"])).revoked_at is None
    assert (await stored_token(session, mine["refresh_token"])).revoked_at is None


async def test_logout_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    registered = await register(client)
    response = await client.post(
        f"{API}/auth/logout", json={"refresh_token": registered["refresh_token"]}
    )
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    response = await client.post(
        f"{API}/auth/logout-all", headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert_problem(response, 401, "not_authenticated")


async def test_logout_all_revokes_every_token(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await register(client)
    second = (await login(client)).json()
    before = datetime.now(UTC)

    response = await client.post(f"{API}/auth/logout-all", headers=bearer(second["access_token"]))
    assert response.status_code == 204
    assert response.content == b""

    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.tokens_valid_after is not None
    assert user.tokens_valid_after >= before
    rows = await stored_refresh_tokens(session, user.id)
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows)
    for access in (registered["access_token"], second["access_token"]):
        me = await client.get(f"{API}/users/me", headers=bearer(access))
        assert_problem(me, 401, "not_authenticated")
    for refresh in (registered["refresh_token"], second["refresh_token"]):
        again = await client.post(f"{API}/auth/refresh", json={"refresh_token": refresh})
        assert_problem(again, 401, "invalid_refresh_token")

    fresh = (await login(client)).json()
    assert (
        await client.get(f"{API}/users/me", headers=bearer(fresh["access_token"]))
    ).status_code == (200)
    renewed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": fresh["refresh_token"]}
    )
    assert renewed.status_code == 200


# --- POST /auth/forgot-password, /auth/reset-password ------------------------------------


async def test_forgot_password_answers_alike_and_mails_only_real_accounts(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    await create_user(session, email=EMAIL)
    known = await client.post(f"{API}/auth/forgot-password", json={"email": "Ada@Example.com"})
    unknown = await client.post(f"{API}/auth/forgot-password", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert known.headers["cache-control"] == "no-store"
    assert await mailbox.messages("nobody@example.com") == []
    token = await mailbox.token(EMAIL, "reset-password")
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.password_reset_token_hash == hash_token(token)
    assert close_to(user.password_reset_expires_at, datetime.now(UTC) + timedelta(hours=1))


async def test_reset_password_sets_it_ends_every_session_and_lifts_the_lock(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    registered = await register(client)
    await change_user(
        session,
        EMAIL,
        failed_login_attempts=5,
        locked_until=datetime.now(UTC) + timedelta(minutes=10),
    )
    await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    token = await mailbox.token(EMAIL, "reset-password")
    old_hash = await stored_password_hash(session, EMAIL)

    response = await client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": OTHER_PASSWORD}
    )
    assert response.status_code == 204
    assert response.content == b""

    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.password_hash != old_hash
    assert user.password_reset_token_hash is None
    assert user.password_reset_expires_at is None
    assert (user.failed_login_attempts, user.locked_until) == (0, None)
    assert user.tokens_valid_after is not None
    assert all(row.revoked_at is not None for row in await stored_refresh_tokens(session, user.id))
    me = await client.get(f"{API}/users/me", headers=bearer(registered["access_token"]))
    assert_problem(me, 401, "not_authenticated")

    assert_problem(await login(client), 401, "invalid_credentials")
    assert (await login(client, password=OTHER_PASSWORD)).status_code == 200
    used = await client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": "Th1rd!Passw0rd"}
    )
    assert_problem(used, 400, "invalid_token")


async def test_reset_password_expired_replaced_or_unknown_token_is_400(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    await create_user(session, email=EMAIL)
    await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    replaced = await mailbox.token(EMAIL, "reset-password")
    await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    current = await mailbox.token(EMAIL, "reset-password")
    await change_user(
        session, EMAIL, password_reset_expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    before = await stored_password_hash(session, EMAIL)
    for token in (replaced, current, "0" * 64):
        response = await client.post(
            f"{API}/auth/reset-password", json={"token": token, "new_password": OTHER_PASSWORD}
        )
        assert_problem(response, 400, "invalid_token")
    assert await stored_password_hash(session, EMAIL) == before


async def test_reset_password_weak_password_is_a_field_error(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    await create_user(session, email=EMAIL)
    await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    token = await mailbox.token(EMAIL, "reset-password")
    response = await client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": "weakweak"}
    )
    assert field_errors(response) == {"new_password"}
    user = await stored_user(session, EMAIL)
    assert user is not None
    assert user.password_reset_token_hash == hash_token(token)


async def test_concurrent_resets_with_one_token_have_one_winner(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    await create_user(session, email=EMAIL)
    await client.post(f"{API}/auth/forgot-password", json={"email": EMAIL})
    token = await mailbox.token(EMAIL, "reset-password")
    passwords = ["F1rst!Passw0rd", "Sec0nd!Passw0rd"]
    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/auth/reset-password", json={"token": token, "new_password": password}
            )
            for password in passwords
        )
    )
    assert sorted(r.status_code for r in responses) == [204, 400]
    winner = passwords[[r.status_code for r in responses].index(204)]
    assert (await login(client, password=winner)).status_code == 200


async def test_forgot_password_bad_email_is_400(client: httpx.AsyncClient) -> None:
    assert field_errors(await client.post(f"{API}/auth/forgot-password", json={})) == {"email"}


# --- responses carry no secrets ------------------------------------------------------------


async def test_no_response_contains_a_hash(
    client: httpx.AsyncClient, session: AsyncSession, mailbox: Mailbox
) -> None:
    registered = await register(client)
    verified = await client.post(
        f"{API}/auth/verify-email", json={"token": await mailbox.token(EMAIL, "verify-email")}
    )
    logged_in = await login(client)
    me = await client.get(f"{API}/users/me", headers=bearer(registered["access_token"]))
    user = await stored_user(session, EMAIL)
    assert isinstance(user, User)
    stored_hashes = [user.password_hash] + [
        row.token_hash for row in await stored_refresh_tokens(session, user.id)
    ]
    for response in (verified, logged_in, me):
        for secret in stored_hashes:
            assert secret not in response.text
        assert "hash" not in response.text
    assert "hash" not in str(registered)
