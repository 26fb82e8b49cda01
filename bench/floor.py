"""The floor: the least work that gives the API's answers for the benchmarked endpoints.

Starlette + an asyncpg pool + PyJWT + orjson: no ORM, no validation framework, one SQL
statement per answer where the API may use more. It reads the same database and verifies
the same tokens, so the ratio app/floor shows what our layers cost. Run with uvicorn:

    DATABASE_URL=postgresql://… JWT_SECRET_KEY=… uvicorn bench.floor:app --workers 2
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import orjson
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SECRET = os.environ["JWT_SECRET_KEY"]
DSN = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
PASSWORDS = PasswordHash((Argon2Hasher(memory_cost=19 * 1024, time_cost=2, parallelism=1),))
PRIORITY_ORDER = "array_position(ARRAY['low','medium','high']::task_priority[], t.priority)"
TASK_COLUMNS = (
    "t.id, t.title, t.description, t.status::text AS status, t.priority::text AS priority, "
    "t.due_date, t.version, t.created_at, t.updated_at"
)
# Joining users answers "is the token still good and the account active" in the same trip.
CALLER = (
    "JOIN users u ON u.id = t.user_id AND u.is_active "
    "AND (u.tokens_valid_after IS NULL OR u.tokens_valid_after <= to_timestamp($2))"
)

pool: asyncpg.Pool | None = None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # asyncpg returns its own UUID type, which orjson leaves to `default`.
    return Response(orjson.dumps(body, default=str), status, headers, media_type="application/json")


def _problem(status: int, code: str) -> Response:
    return Response(
        orjson.dumps({"status": status, "code": code}),
        status,
        media_type="application/problem+json",
    )


def _claims(request: Request) -> dict[str, Any] | None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            header[7:], SECRET, algorithms=["HS256"], audience="taskapi", issuer="taskapi"
        )
    except jwt.PyJWTError:
        return None
    return claims if claims.get("type") == "access" else None


def _task(row: asyncpg.Record, categories: list[dict[str, Any]]) -> dict[str, Any]:
    task = dict(row)
    task["categories"] = categories
    return task


async def _categories(
    connection: asyncpg.Connection, task_ids: list[uuid.UUID]
) -> dict[Any, list[Any]]:
    rows = await connection.fetch(
        "SELECT tc.task_id, c.id, c.name, c.color, c.created_at, c.updated_at "
        "FROM task_categories tc JOIN categories c ON c.id = tc.category_id "
        "WHERE tc.task_id = ANY($1::uuid[]) ORDER BY c.name",
        task_ids,
    )
    grouped: dict[Any, list[Any]] = {task_id: [] for task_id in task_ids}
    for row in rows:
        category = dict(row)
        grouped[category.pop("task_id")].append(category)
    return grouped


async def get_task(request: Request) -> Response:
    claims = _claims(request)
    if claims is None:
        return _problem(401, "not_authenticated")
    assert pool is not None
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            f"SELECT {TASK_COLUMNS} FROM tasks t {CALLER} "
            "WHERE t.id = $3 AND t.user_id = $1 AND t.deleted_at IS NULL",
            uuid.UUID(claims["sub"]),
            claims["iat"],
            uuid.UUID(request.path_params["task_id"]),
        )
        if row is None:
            return _problem(404, "not_found")
        categories = await _categories(connection, [row["id"]])
    return _json(_task(row, categories[row["id"]]), headers={"ETag": f'"{row["version"]}"'})


async def list_tasks(request: Request) -> Response:
    claims = _claims(request)
    if claims is None:
        return _problem(401, "not_authenticated")
    limit = int(request.query_params.get("limit", "20"))
    page = int(request.query_params.get("page", "1"))
    user_id = uuid.UUID(claims["sub"])
    assert pool is not None
    async with pool.acquire() as connection:
        cursor = request.query_params.get("cursor")
        if cursor:
            created_at, last_id = orjson.loads(bytes.fromhex(cursor))
            rows = await connection.fetch(
                f"SELECT {TASK_COLUMNS} FROM tasks t {CALLER} "
                "WHERE t.user_id = $1 AND t.deleted_at IS NULL AND (t.created_at, t.id) < ($3, $4) "
                "ORDER BY t.created_at DESC, t.id DESC LIMIT $5",
                user_id,
                claims["iat"],
                datetime.fromisoformat(created_at),
                uuid.UUID(last_id),
                limit + 1,
            )
            total = None
        else:
            rows = await connection.fetch(
                f"SELECT {TASK_COLUMNS}, count(*) OVER () AS total FROM tasks t {CALLER} "
                "WHERE t.user_id = $1 AND t.deleted_at IS NULL "
                "ORDER BY t.created_at DESC, t.id DESC LIMIT $3 OFFSET $4",
                user_id,
                claims["iat"],
                limit + 1,
                (page - 1) * limit,
            )
            total = rows[0]["total"] if rows else 0
        more = len(rows) > limit
        rows = rows[:limit]
        categories = await _categories(connection, [row["id"] for row in rows])
    items = []
    for row in rows:
        task = dict(row)
        task.pop("total", None)
        task["categories"] = categories[row["id"]]
        items.append(task)
    last = rows[-1] if more else None
    body: dict[str, Any] = {
        "items": items,
        "total": total,
        "page": None if cursor else page,
        "limit": limit,
        "pages": None if total is None else -(-total // limit),
        "next_cursor": (
            orjson.dumps([last["created_at"].isoformat(), str(last["id"])]).hex() if last else None
        ),
    }
    return _json(body)


async def create_task(request: Request) -> Response:
    claims = _claims(request)
    if claims is None:
        return _problem(401, "not_authenticated")
    payload = orjson.loads(await request.body())
    now = datetime.now(UTC)
    assert pool is not None
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "INSERT INTO tasks (id, user_id, title, description, priority, status, version, "
            "created_at, updated_at) SELECT $3, u.id, $4, $5, $6::task_priority, 'pending', 1, "
            "$7, $7 FROM users u WHERE u.id = $1 AND u.is_active AND (u.tokens_valid_after IS "
            "NULL OR u.tokens_valid_after <= to_timestamp($2)) "
            f"RETURNING {TASK_COLUMNS.replace('t.', '')}",
            uuid.UUID(claims["sub"]),
            claims["iat"],
            uuid.uuid4(),
            payload["title"].strip(),
            payload.get("description"),
            payload.get("priority", "medium"),
            now,
        )
    if row is None:
        return _problem(401, "not_authenticated")
    return _json(_task(row, []), 201)


async def patch_task(request: Request) -> Response:
    claims = _claims(request)
    if claims is None:
        return _problem(401, "not_authenticated")
    payload = orjson.loads(await request.body())
    version = int(payload.pop("version"))
    assert pool is not None
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "UPDATE tasks t SET status = coalesce($5::task_status, t.status), "
            "title = coalesce($6, t.title), version = t.version + 1, updated_at = now() "
            "FROM users u WHERE u.id = t.user_id AND u.is_active AND (u.tokens_valid_after IS "
            "NULL OR u.tokens_valid_after <= to_timestamp($2)) AND t.id = $3 AND t.user_id = $1 "
            f"AND t.deleted_at IS NULL AND t.version = $4 RETURNING {TASK_COLUMNS}",
            uuid.UUID(claims["sub"]),
            claims["iat"],
            uuid.UUID(request.path_params["task_id"]),
            version,
            payload.get("status"),
            payload.get("title"),
        )
        if row is None:
            return _problem(409, "version_conflict")
        categories = await _categories(connection, [row["id"]])
    return _json(_task(row, categories[row["id"]]), headers={"ETag": f'"{row["version"]}"'})


async def me(request: Request) -> Response:
    claims = _claims(request)
    if claims is None:
        return _problem(401, "not_authenticated")
    assert pool is not None
    row = await pool.fetchrow(
        "SELECT id, email, full_name, is_active, created_at, updated_at FROM users "
        "WHERE id = $1 AND (tokens_valid_after IS NULL OR tokens_valid_after <= to_timestamp($2)) "
        "AND NOT EXISTS (SELECT FROM refresh_token_families "
        "WHERE id = $3 AND revoked_at IS NOT NULL)",
        uuid.UUID(claims["sub"]),
        claims["iat"],
        uuid.UUID(claims["sid"]),
    )
    if row is None:
        return _problem(401, "not_authenticated")
    return _json(dict(row))


async def login(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    assert pool is not None
    row = await pool.fetchrow(
        "SELECT id, email, password_hash, full_name, is_active, created_at, updated_at "
        "FROM users WHERE email = $1",
        payload["email"].lower(),
    )
    if row is None or not await run_in_threadpool(
        PASSWORDS.verify, payload["password"], row["password_hash"]
    ):
        return _problem(401, "invalid_credentials")
    now = time.time()
    family = uuid.uuid4()
    access = jwt.encode(
        {
            "sub": str(row["id"]),
            "email": row["email"],
            "iat": now,
            "exp": int(now + 900),
            "jti": uuid.uuid4().hex,
            "type": "access",
            "iss": "taskapi",
            "aud": "taskapi",
            "sid": str(family),
        },
        SECRET,
        algorithm="HS256",
    )
    refresh = secrets.token_hex(32)
    expires_at = datetime.now(UTC) + timedelta(days=7)
    await pool.execute(
        "INSERT INTO refresh_token_families "
        "(id, user_id, user_agent, ip, created_at, last_used_at, expires_at) "
        "VALUES ($1, $2, $3, $4, now(), now(), $5)",
        family,
        row["id"],
        request.headers.get("user-agent"),
        request.client.host if request.client else None,
        expires_at,
    )
    await pool.execute(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, created_at) "
        "VALUES ($1, $2, $3, encode(sha256($4::bytea), 'hex'), $5, now())",
        uuid.uuid4(),
        row["id"],
        family,
        refresh.encode(),
        expires_at,
    )
    user = dict(row)
    user.pop("password_hash")
    return _json(
        {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": 900,
            "user": user,
        }
    )


async def live(_: Request) -> Response:
    return _json({"status": "alive"})


async def webhook_receiver(_: Request) -> Response:
    """Where the app's webhook scenarios deliver (bench/harness.py): accepted, not kept."""
    return Response(status_code=204)


@asynccontextmanager
async def lifespan(_: Starlette) -> Any:
    global pool
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=10)
    yield
    await pool.close()


app = Starlette(
    routes=[
        Route("/api/v1/tasks", list_tasks, methods=["GET"]),
        Route("/api/v1/tasks", create_task, methods=["POST"]),
        Route("/api/v1/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/api/v1/tasks/{task_id}", patch_task, methods=["PATCH"]),
        Route("/api/v1/users/me", me, methods=["GET"]),
        Route("/api/v1/auth/login", login, methods=["POST"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/webhook-receiver", webhook_receiver, methods=["POST"]),
    ],
    lifespan=lifespan,
)
