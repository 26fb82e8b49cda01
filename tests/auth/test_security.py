"""Password hashing and token primitives of core/security.py."""

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from taskapi.core.config import Settings
from taskapi.core.security import (
    InvalidToken,
    PasswordHasher,
    create_access_token,
    decode_access_token,
    hash_token,
    new_opaque_token,
)

KEY = "k" * 64
OLD_KEY = "o" * 64


def _settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, app_env="test", jwt_secret_key=KEY, **overrides)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "sub": str(uuid.uuid4()),
        "email": "ada@example.com",
        "iat": now,
        "exp": int(now + 600),
        "jti": uuid.uuid4().hex,
        "sid": str(uuid.uuid4()),
        "type": "access",
        "iss": "taskapi",
        "aud": "taskapi",
        **overrides,
    }


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def hasher() -> Any:
    pool = PasswordHasher(max_workers=2)
    yield pool
    pool.shutdown()


async def test_hash_is_argon2id_with_the_required_cost(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("Str0ng!Passw0rd")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await hasher.verify("Str0ng!Passw0rd", hashed)
    assert not await hasher.verify("Str0ng!Passw0rD", hashed)


async def test_same_password_hashes_differently(hasher: PasswordHasher) -> None:
    assert await hasher.hash("Str0ng!Passw0rd") != await hasher.hash("Str0ng!Passw0rd")


@pytest.mark.parametrize(
    "password", ["Pässwörd1!Ü", "Emoji🔐Pass1!", "With\x00Nul1!A", "日本語のパスワードA1!"]
)
async def test_any_unicode_password_round_trips(hasher: PasswordHasher, password: str) -> None:
    hashed = await hasher.hash(password)
    assert await hasher.verify(password, hashed)
    assert not await hasher.verify(password[:-1], hashed)


async def test_nothing_after_a_nul_is_dropped(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("Before1!\x00After")
    assert not await hasher.verify("Before1!", hashed)
    assert not await hasher.verify("Before1!\x00Afte", hashed)
    assert await hasher.verify("Before1!\x00After", hashed)


async def test_verify_dummy_spends_a_verification_against_the_same_parameters(
    hasher: PasswordHasher,
) -> None:
    class Counting(PasswordHasher):
        verified: list[str]

        async def verify(self, password: str, password_hash: str) -> bool:
            self.verified.append(password_hash)
            return await super().verify(password, password_hash)

    counting = Counting(max_workers=1)
    counting.verified = []
    try:
        await counting.verify_dummy("anything")
        await counting.verify_dummy("anything else")
    finally:
        counting.shutdown()
    assert len(counting.verified) == 2
    assert all(h.startswith("$argon2id$v=19$m=19456,t=2,p=1$") for h in counting.verified)


def test_access_token_round_trip() -> None:
    settings = _settings()
    user_id, family_id = uuid.uuid4(), uuid.uuid4()
    before = time.time()
    token = create_access_token(
        settings=settings, user_id=user_id, email="ada@example.com", family_id=family_id
    )
    claims = decode_access_token(settings=settings, token=token)
    assert claims.user_id == user_id
    assert claims.family_id == family_id
    assert claims.email == "ada@example.com"
    assert before - 0.001 <= claims.issued_at
    assert len(claims.token_id) == 32

    payload = jwt.decode(token, KEY, algorithms=["HS256"], audience="taskapi")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert payload["type"] == "access"
    assert payload["iss"] == payload["aud"] == "taskapi"
    assert payload["exp"] - int(payload["iat"]) in (15 * 60, 15 * 60 - 1)


def test_each_token_has_its_own_id() -> None:
    settings = _settings()
    user_id, family_id = uuid.uuid4(), uuid.uuid4()
    tokens = {
        create_access_token(settings=settings, user_id=user_id, email="a@b.co", family_id=family_id)
        for _ in range(3)
    }
    ids = {decode_access_token(settings=settings, token=t).token_id for t in tokens}
    assert len(ids) == 3


def _rejected(token: str, settings: Settings | None = None) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(settings=settings or _settings(), token=token)


def test_tampered_payload_is_rejected() -> None:
    token = jwt.encode(_claims(), KEY, algorithm="HS256")
    header, _, signature = token.split(".")
    forged = _b64(_claims(sub=str(uuid.uuid4())))
    _rejected(f"{header}.{forged}.{signature}")


def test_tampered_signature_is_rejected() -> None:
    token = jwt.encode(_claims(), KEY, algorithm="HS256")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    _rejected(flipped)


def test_alg_none_is_rejected() -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    _rejected(unsigned)
    _rejected(jwt.encode(_claims(), None, algorithm="none"))


def test_other_algorithm_with_the_right_key_is_rejected() -> None:
    _rejected(jwt.encode(_claims(), KEY, algorithm="HS512"))


def test_expired_token_is_rejected() -> None:
    past = time.time() - 3600
    _rejected(jwt.encode(_claims(iat=past, exp=int(past + 60)), KEY, algorithm="HS256"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"iss": "someone-else"},
        {"type": "refresh"},
        {"type": "reset"},
        {"sub": "not-a-uuid"},
        {"sid": "not-a-uuid"},
        {"email": 42},
    ],
)
def test_wrong_claims_are_rejected(overrides: dict[str, Any]) -> None:
    _rejected(jwt.encode(_claims(**overrides), KEY, algorithm="HS256"))


@pytest.mark.parametrize("missing", ["sub", "email", "iat", "exp", "jti", "sid", "type", "iss"])
def test_each_claim_is_required(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    _rejected(jwt.encode(claims, KEY, algorithm="HS256"))


def test_missing_audience_is_rejected() -> None:
    claims = _claims()
    del claims["aud"]
    _rejected(jwt.encode(claims, KEY, algorithm="HS256"))


def test_refresh_token_is_never_an_access_token() -> None:
    _rejected(new_opaque_token())


def test_previous_key_verifies_during_rotation() -> None:
    old_token = jwt.encode(_claims(), OLD_KEY, algorithm="HS256")
    _rejected(old_token)
    rotated = _settings(jwt_secret_key_prev=OLD_KEY)
    assert decode_access_token(settings=rotated, token=old_token).email == "ada@example.com"
    new_token = jwt.encode(_claims(), KEY, algorithm="HS256")
    assert decode_access_token(settings=rotated, token=new_token).email == "ada@example.com"
    _rejected(jwt.encode(_claims(), "x" * 40, algorithm="HS256"), rotated)


def test_previous_key_does_not_excuse_other_faults() -> None:
    rotated = _settings(jwt_secret_key_prev=OLD_KEY)
    _rejected(jwt.encode(_claims(aud="elsewhere"), OLD_KEY, algorithm="HS256"), rotated)


def test_opaque_tokens_are_64_hex_and_stored_as_sha256() -> None:
    token = new_opaque_token()
    assert len(token) == 64
    int(token, 16)
    assert token != new_opaque_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert hash_token(token) == hash_token(token)
    assert hash_token(token) != token


def test_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings()
    token = jwt.encode(_claims(exp=int(time.time() + 60)), KEY, algorithm="HS256")
    assert decode_access_token(settings=settings, token=token).email == "ada@example.com"
    later = time.time() + 61
    monkeypatch.setattr("taskapi.core.security.time.time", lambda: later)
    _rejected(token, settings)


def test_remembered_token_is_not_trusted_under_other_settings() -> None:
    token = jwt.encode(_claims(), KEY, algorithm="HS256")
    assert decode_access_token(settings=_settings(), token=token).email == "ada@example.com"
    _rejected(token, Settings(_env_file=None, app_env="test", jwt_secret_key="n" * 64))
    _rejected(token, _settings(jwt_audience="another-api"))
    _rejected(token, _settings(jwt_issuer="another-issuer"))


def test_rejections_are_not_remembered_as_successes() -> None:
    settings = _settings()
    forged = jwt.encode(_claims(), "x" * 64, algorithm="HS256")
    _rejected(forged, settings)
    _rejected(forged, settings)
