"""The signed-in user, cached for the authentication every request does (15 minutes).

It lives in auth/, beside the model whose shape it keeps and the service that is the only
place users change: auth/service.py reads through it (`authenticate`) and invalidates it
after every change it commits, so routers never see it and core/ keeps only the
feature-free storage (`core.cache`).

What is cached is what authentication and `GET /users/me` need: the user's columns but the
password and token hashes (none ever reaches Redis), and the ids of the user's refresh-token
families revoked within an access token's lifetime, so that access tokens of a revoked
session (`sid`) are refused without a database read (auth/families.py). It is serialized
with orjson (never pickle: whoever can write to Redis must not be able to run code here)
and handed out as a detached User whose other attributes raise on access instead of
answering None. Every service function that changes a user loads the row itself, so none
ever writes through a cached copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from taskapi.auth.models import User
from taskapi.core.cache import CacheStore, Lookup
from taskapi.core.db import after_commit

USER_CACHE_TTL = timedelta(minutes=15)
USER_CACHE_COMPONENT = "user_cache"
REVOKED_FAMILIES = "revoked_families"
CACHED_USER_COLUMNS = (
    User.id,
    User.email,
    User.full_name,
    User.is_active,
    User.tokens_valid_after,
    User.created_at,
    User.updated_at,
)


@dataclass(frozen=True, slots=True)
class CachedUser:
    user: User
    revoked_families: frozenset[uuid.UUID]
    """Families revoked so recently that access tokens issued in them may still be alive."""


class UserCache:
    def __init__(self, store: CacheStore) -> None:
        self._store = store

    async def get(self, user_id: uuid.UUID) -> tuple[CachedUser | None, Lookup]:
        """The cached user (None on a miss) and the lookup that `fill` needs after a miss."""
        lookup = await self._store.get(str(user_id))
        if lookup.value is None:
            return None, lookup
        return _decode(lookup.value), lookup

    async def fill(
        self, lookup: Lookup, row: RowMapping, revoked_families: Iterable[uuid.UUID]
    ) -> CachedUser:
        """Cache a row of CACHED_USER_COLUMNS and the user's revoked families, both read
        after `lookup` missed; the entry as a hit would give it, so callers see the same
        object either way."""
        raw = orjson.dumps(
            {
                **{column.key: row[column.key] for column in CACHED_USER_COLUMNS},
                REVOKED_FAMILIES: [str(family_id) for family_id in revoked_families],
            },
            # asyncpg hands out UUIDs of its own type, which orjson does not know
            default=str,
        )
        await self._store.fill(lookup, raw)
        cached = _decode(raw)
        if cached is None:
            raise RuntimeError(f"a user row does not round-trip through the cache: {raw!r}")
        return cached

    def invalidate_after_commit(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        """Forget the user once `session` commits the change just made to the row.

        After the commit, not now: a request that misses between an early invalidation and
        the commit would read the old row and cache it for a whole TTL. The store's fill
        refuses a value read before an invalidation, which closes the remaining window
        (a miss, then this commit and invalidation, then that miss's fill).
        """
        key = str(user_id)

        async def invalidate() -> None:
            await self._store.invalidate(key)

        after_commit(session, invalidate)


def _decode(raw: bytes) -> CachedUser | None:
    """None for anything that is not a value this version wrote: it is then a miss."""
    try:
        fields = orjson.loads(raw)
        tokens_valid_after = fields["tokens_valid_after"]
        user = _detached_user(
            {
                "id": uuid.UUID(fields["id"]),
                "email": fields["email"],
                "full_name": fields["full_name"],
                "is_active": fields["is_active"],
                "tokens_valid_after": None
                if tokens_valid_after is None
                else datetime.fromisoformat(tokens_valid_after),
                "created_at": datetime.fromisoformat(fields["created_at"]),
                "updated_at": datetime.fromisoformat(fields["updated_at"]),
            }
        )
        revoked = frozenset(uuid.UUID(family_id) for family_id in fields[REVOKED_FAMILIES])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return CachedUser(user, revoked)


def _detached_user(fields: Mapping[str, Any]) -> User:
    user = User(**fields)
    make_transient_to_detached(user)
    return user
