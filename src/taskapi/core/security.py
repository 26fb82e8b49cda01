"""Password hashing (argon2id, off the event loop) and token primitives (JWT, opaque)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from starlette.types import Scope

from taskapi.core.config import Settings

ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 (a claim value, not a secret)
REQUIRED_CLAIMS = ["sub", "email", "iat", "exp", "jti", "sid", "type", "iss", "aud"]


class InvalidToken(Exception):
    """Any reason a bearer token is not acceptable; callers answer 401 without details."""


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's first `Authorization: Bearer <token>` header, read as
    OAuth2's bearer scheme reads it (scheme in any case, blanks around the token ignored),
    or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, token = header.partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def argon2id() -> PasswordHash:
    """The one argon2id configuration: the app's hasher, test fixtures and the benchmark."""
    return PasswordHash(
        (
            Argon2Hasher(
                memory_cost=ARGON2_MEMORY_KIB,
                time_cost=ARGON2_TIME_COST,
                parallelism=ARGON2_PARALLELISM,
            ),
        )
    )


class PasswordHasher:
    """argon2id in a bounded thread pool: argon2-cffi drops the GIL, so hashes run in
    parallel on every core while the event loop keeps serving."""

    def __init__(self, *, max_workers: int | None = None) -> None:
        self._hash = argon2id()
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers or os.cpu_count() or 2, thread_name_prefix="argon2"
        )
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hash.hash, password)

    async def verify(self, password: str, password_hash: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._hash.verify, password, password_hash
        )

    async def verify_dummy(self, password: str) -> None:
        """Spend one real verification so an unknown email costs what a known one does."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(password, self._dummy_hash)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    email: str
    issued_at: float
    token_id: str
    family_id: uuid.UUID
    """The refresh-token family (the login) the access token was issued with: claim `sid`."""


def create_access_token(
    *, settings: Settings, user_id: uuid.UUID, email: str, family_id: uuid.UUID
) -> str:
    now = time.time()
    payload = {
        "sub": str(user_id),
        "email": email,
        # Fractional seconds: logout-all must reject a token issued earlier in the same second.
        "iat": round(now, 6),
        "exp": int(now + settings.access_token_expire_minutes * 60),
        "jti": uuid.uuid4().hex,
        "sid": str(family_id),
        "type": ACCESS_TOKEN_TYPE,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return jwt.encode(payload, settings.secret_key, algorithm=settings.jwt_algorithm)


def decode_access_token(*, settings: Settings, token: str) -> AccessClaims:
    """Verify an access token, or raise InvalidToken.

    A client sends the same token on every request for its whole lifetime, and the
    signature check (with PyJWT's character-by-character base64 validation) is the dearest
    part of a small request, so a verified token is remembered: by the token AND every
    setting that verified it, so a token is never trusted under another key, issuer or
    audience. Expiry is checked again on every use.
    """
    claims, expires_at = _verify_access_token(
        token,
        (settings.secret_key, settings.jwt_secret_key_prev),
        settings.jwt_algorithm,
        settings.jwt_issuer,
        settings.jwt_audience,
    )
    if time.time() >= expires_at:
        raise InvalidToken("token expired")
    return claims


VERIFIED_TOKEN_CACHE_SIZE = 4096


@lru_cache(maxsize=VERIFIED_TOKEN_CACHE_SIZE)
def _verify_access_token(
    token: str, keys: tuple[str, str | None], algorithm: str, issuer: str, audience: str
) -> tuple[AccessClaims, float]:
    for key in keys:
        if key is None:
            continue
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        expires_at = payload["exp"]
        if not isinstance(expires_at, int | float):
            raise InvalidToken("malformed claims")
        return _claims(payload), float(expires_at)
    raise InvalidToken("signature verification failed")


def _claims(payload: dict[str, object]) -> AccessClaims:
    if payload.get("type") != ACCESS_TOKEN_TYPE:
        raise InvalidToken("not an access token")
    subject, email, issued_at, token_id, family = (
        payload["sub"],
        payload["email"],
        payload["iat"],
        payload["jti"],
        payload["sid"],
    )
    if not (
        isinstance(subject, str)
        and isinstance(email, str)
        and isinstance(issued_at, int | float)
        and isinstance(token_id, str)
        and isinstance(family, str)
    ):
        raise InvalidToken("malformed claims")
    try:
        user_id = uuid.UUID(subject)
        family_id = uuid.UUID(family)
    except ValueError as error:
        raise InvalidToken("malformed subject or family") from error
    return AccessClaims(
        user_id=user_id,
        email=email,
        issued_at=float(issued_at),
        token_id=token_id,
        family_id=family_id,
    )


def new_opaque_token() -> str:
    """Refresh, verification and reset tokens: 256 random bits as 64 hex characters."""
    return secrets.token_hex(32)


LINK_TOKEN_CONTEXT = b"taskapi email link v1:"


def link_token(secret: str, nonce: str) -> str:
    """The token of an emailed link (verification, reset), derived from a random nonce with
    the server's secret. The job that sends the email keeps only the nonce, so the database
    never holds a usable token, and every attempt at sending it carries the same one."""
    mac = hmac.new(secret.encode("utf-8"), LINK_TOKEN_CONTEXT + nonce.encode("utf-8"), "sha256")
    return mac.hexdigest()


def hash_token(token: str) -> str:
    """Tokens are high-entropy, so a fast unsalted SHA-256 is the right storage hash."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
