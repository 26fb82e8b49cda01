"""A bounded soak: realistic mixed traffic for a while, then three verdicts.

    uv run python -m bench.soak               # about 60 s of traffic
    uv run python -m bench.soak --seconds 10  # the short version CI runs (tests/test_soak.py)

Starts `taskapi serve` in production configuration with two workers on a PostgreSQL
database of its own (created, then dropped) and Redis under a key prefix of its own
(deleted afterwards), rate limits raised out of the way. Several users, each registered,
verified through the database and logged in, run an asyncio client that creates, lists,
reads, patches (with versions), deletes tasks, makes categories and puts tasks in them,
reads /users/me and refreshes its tokens. Then:

- zero 5xx (and no transport errors, and no answer the client's own state rules out);
- no lost writes: every task a 201 created is read back with the title and version of the
  last write the client saw succeed, unless that client deleted it (then it is a 404);
- worker memory (RSS from /proc) at the end within 10 % of its size after the warm-up.

Prints a short report; exits 1 on a violation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from bench.harness import (
    SERVE,
    create_database,
    drop_database,
    free_port,
    start_server,
    stop_server,
    worker_rss_mb,
)

PASSWORD = "Soak!Passw0rd"  # noqa: S105 (the soak users' password)
MEMORY_TOLERANCE = 0.10
WORKERS = 2
# (operation, weight): mostly reads, as a task app's clients do.
MIX = [
    ("create", 14),
    ("list", 24),
    ("get", 20),
    ("patch", 14),
    ("delete", 5),
    ("categorize", 6),
    ("me", 10),
    ("refresh", 3),
    ("search", 4),
]


@dataclass
class TaskState:
    title: str
    version: int


@dataclass
class Stats:
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.transport_errors.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


@dataclass
class User:
    email: str
    access_token: str
    refresh_token: str
    tasks: dict[str, TaskState] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    categories: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Client:
    """One user's traffic. Every answer is checked against what this client knows: it is
    the only one touching this user's data, so a 409 or 404 on its own task is a bug."""

    def __init__(self, http: httpx.AsyncClient, user: User, stats: Stats, seed: int) -> None:
        self.http = http
        self.user = user
        self.stats = stats
        self.random = random.Random(seed)
        self.counter = 0

    async def call(
        self, method: str, path: str, expected: set[int], **kwargs: Any
    ) -> httpx.Response | None:
        try:
            response = await self.http.request(method, path, headers=self.user.headers, **kwargs)
        except httpx.TransportError as error:
            self.stats.transport_errors[type(error).__name__] += 1
            return None
        self.stats.statuses[response.status_code] += 1
        if response.status_code not in expected:
            self.stats.unexpected.append(
                f"{method} {path} -> {response.status_code} {response.text[:200]}"
            )
            return None
        return response

    def _own_task(self) -> str | None:
        return self.random.choice(list(self.user.tasks)) if self.user.tasks else None

    async def run(self, stop: asyncio.Event) -> None:
        operations, weights = zip(*MIX, strict=True)
        while not stop.is_set():
            operation = self.random.choices(operations, weights)[0]
            await getattr(self, operation)()

    async def create(self) -> None:
        self.counter += 1
        title = f"Task {self.counter} of {self.user.email}"
        body: dict[str, Any] = {"title": title, "priority": self.random.choice(PRIORITIES)}
        if self.random.random() < 0.5:
            body["due_date"] = (
                f"2031-0{self.random.randint(1, 9)}-1{self.random.randint(0, 9)}T09:00:00Z"
            )
        response = await self.call("POST", "/api/v1/tasks", {201}, json=body)
        if response is not None:
            self.user.tasks[response.json()["id"]] = TaskState(title, response.json()["version"])

    async def list(self) -> None:
        params: dict[str, Any] = {"limit": self.random.choice([10, 20, 50])}
        if self.random.random() < 0.4:
            params["sort_by"] = self.random.choice(["priority", "title", "due_date", "updated_at"])
            params["sort_order"] = self.random.choice(["asc", "desc"])
        if self.random.random() < 0.3:
            params["priority"] = self.random.choice(PRIORITIES)
        if self.user.categories and self.random.random() < 0.2:
            params["category_id"] = self.random.choice(self.user.categories)
        await self.call("GET", "/api/v1/tasks", {200}, params=params)

    async def search(self) -> None:
        await self.call(
            "GET", "/api/v1/tasks", {200}, params={"q": str(self.random.randint(1, 99))}
        )

    async def get(self) -> None:
        task_id = self._own_task()
        if task_id is None:
            return await self.create()
        await self.call("GET", f"/api/v1/tasks/{task_id}", {200})
        return None

    async def patch(self) -> None:
        task_id = self._own_task()
        if task_id is None:
            return await self.create()
        state = self.user.tasks[task_id]
        self.counter += 1
        title = f"Task {self.counter} (edited) of {self.user.email}"
        body = {"title": title, "version": state.version}
        if self.random.random() < 0.3:
            body["status"] = self.random.choice(["in_progress", "completed"])
        response = await self.call("PATCH", f"/api/v1/tasks/{task_id}", {200}, json=body)
        if response is not None:
            self.user.tasks[task_id] = TaskState(title, response.json()["version"])
        return None

    async def delete(self) -> None:
        task_id = self._own_task()
        if task_id is None:
            return None
        response = await self.call("DELETE", f"/api/v1/tasks/{task_id}", {204})
        if response is not None:
            del self.user.tasks[task_id]
            self.user.deleted.add(task_id)
        return None

    async def categorize(self) -> None:
        if len(self.user.categories) < 5:
            self.counter += 1
            response = await self.call(
                "POST", "/api/v1/categories", {201}, json={"name": f"Category {self.counter}"}
            )
            if response is not None:
                self.user.categories.append(response.json()["id"])
            return
        task_id = self._own_task()
        if task_id is None:
            return
        category_id = self.random.choice(self.user.categories)
        path = f"/api/v1/tasks/{task_id}/categories/{category_id}"
        response = await self.call("POST", path, {200, 409})
        if response is not None and response.status_code == 200:
            self.user.tasks[task_id].version = response.json()["version"]
        elif response is not None:
            removed = await self.call("DELETE", path, {204})
            if removed is not None:
                self.user.tasks[task_id].version += 1

    async def me(self) -> None:
        await self.call("GET", "/api/v1/users/me", {200})

    async def refresh(self) -> None:
        response = await self.call(
            "POST", "/api/v1/auth/refresh", {200}, json={"refresh_token": self.user.refresh_token}
        )
        if response is not None:
            self.user.access_token = response.json()["access_token"]
            self.user.refresh_token = response.json()["refresh_token"]


PRIORITIES = ["low", "medium", "high"]


@asynccontextmanager
async def own_database(server_url: str) -> AsyncIterator[str]:
    name, url = await create_database(server_url, "taskapi_soak")
    try:
        yield url
    finally:
        await drop_database(server_url, name)


async def delete_keys(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def sign_up(http: httpx.AsyncClient, database_url: str, number: int) -> User:
    """Register, verify the email through the database (as the emailed link would), log in."""
    email = f"soak-{number}-{uuid.uuid4().hex[:8]}@example.com"
    registered = await http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": f"Soak User {number}"},
    )
    registered.raise_for_status()
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("UPDATE users SET is_active = true WHERE email = $1", email)
    finally:
        await connection.close()
    login = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    login.raise_for_status()
    tokens = login.json()
    return User(email, tokens["access_token"], tokens["refresh_token"])


async def lost_writes(http: httpx.AsyncClient, users: list[User]) -> list[str]:
    """Every task a client created is there as its last successful write left it, unless
    the client deleted it: then it must be gone."""
    problems: list[str] = []
    semaphore = asyncio.Semaphore(16)

    async def check(user: User, task_id: str, state: TaskState | None) -> None:
        async with semaphore:
            response = await http.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
        if state is None:
            if response.status_code != 404:
                problems.append(f"deleted task {task_id} answered {response.status_code}")
        elif response.status_code != 200:
            problems.append(f"task {task_id} answered {response.status_code}")
        elif (response.json()["title"], response.json()["version"]) != (state.title, state.version):
            problems.append(
                f"task {task_id}: stored {response.json()['title']!r} v{response.json()['version']}"
                f", last write {state.title!r} v{state.version}"
            )

    await asyncio.gather(
        *(check(user, task_id, state) for user in users for task_id, state in user.tasks.items()),
        *(check(user, task_id, None) for user in users for task_id in user.deleted),
    )
    return problems


async def soak(args: argparse.Namespace) -> int:
    redis_prefix = f"taskapi-soak-{uuid.uuid4().hex[:10]}:"
    port = free_port()
    async with own_database(args.postgres_url) as database_url:
        with TemporaryDirectory(prefix="taskapi-soak-") as workdir:
            server = await asyncio.to_thread(
                start_server,
                "taskapi",
                SERVE,
                {
                    "APP_ENV": "production",
                    "EMAIL_BACKEND": "console",
                    "DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://"),
                    "REDIS_URL": args.redis_url,
                    "REDIS_KEY_PREFIX": redis_prefix,
                    "JWT_SECRET_KEY": secrets.token_urlsafe(48),
                    "WORKERS": str(WORKERS),
                    "HOST": "127.0.0.1",
                    "RATE_LIMIT_USER_PER_MINUTE": "1000000",
                    "RATE_LIMIT_ANONYMOUS_PER_MINUTE": "1000000",
                    "LOG_LEVEL": "WARNING",
                },
                Path(workdir),
                port,
            )
            try:
                return await drive(args, server.url, server.process.pid, database_url)
            finally:
                await asyncio.to_thread(stop_server, server)
                await delete_keys(args.redis_url, redis_prefix)


async def drive(args: argparse.Namespace, base_url: str, server_pid: int, database_url: str) -> int:
    limits = httpx.Limits(max_connections=args.users * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        users = [await sign_up(http, database_url, number) for number in range(args.users)]
        stats = Stats()
        clients = [
            Client(http, user, stats, seed=args.seed + number) for number, user in enumerate(users)
        ]
        warmup = max(2.0, args.seconds / 4)
        stop = asyncio.Event()
        started = time.monotonic()
        running = [asyncio.create_task(client.run(stop)) for client in clients]
        await asyncio.sleep(warmup)
        rss_after_warmup = sum(worker_rss_mb(server_pid))
        await asyncio.sleep(max(0.0, args.seconds - warmup))
        stop.set()
        await asyncio.gather(*running)
        elapsed = time.monotonic() - started
        rss_at_end = sum(worker_rss_mb(server_pid))
        lost = await lost_writes(http, users)

    growth = (rss_at_end - rss_after_warmup) / rss_after_warmup if rss_after_warmup else 1.0
    violations = []
    if stats.server_errors:
        violations.append(f"{stats.server_errors} answers were 5xx")
    if stats.transport_errors:
        violations.append(f"transport errors: {dict(stats.transport_errors)}")
    if stats.unexpected:
        violations.append(
            f"{len(stats.unexpected)} unexpected answers, first: {stats.unexpected[0]}"
        )
    if lost:
        violations.append(f"{len(lost)} lost writes, first: {lost[0]}")
    if growth > MEMORY_TOLERANCE:
        violations.append(f"worker memory grew {growth:.1%} after warm-up (limit 10 %)")

    tasks_alive = sum(len(user.tasks) for user in users)
    tasks_deleted = sum(len(user.deleted) for user in users)
    print(f"soak: {elapsed:.0f} s, {args.users} users, {WORKERS} workers, PostgreSQL + Redis")
    print(f"  requests      {stats.requests} ({stats.requests / elapsed:.0f}/s)")
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(stats.statuses.items()))
    print(f"  statuses      {statuses}")
    print(f"  5xx           {stats.server_errors}")
    print(f"  transport     {sum(stats.transport_errors.values())}")
    print(f"  unexpected    {len(stats.unexpected)}")
    print(f"  writes read   {tasks_alive} tasks kept, {tasks_deleted} deleted; lost {len(lost)}")
    print(
        f"  worker RSS    {rss_after_warmup:.1f} MB after {warmup:.0f} s warm-up, "
        f"{rss_at_end:.1f} MB at the end ({growth:+.1%})"
    )
    for violation in violations:
        print(f"  VIOLATION     {violation}")
    print("soak: " + ("FAILED" if violations else "passed"))
    return 1 if violations else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic time (default 60)")
    parser.add_argument("--users", type=int, default=6, help="concurrent users (default 6)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the clients' choices")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "SOAK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server the soak may create a database on",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("SOAK_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    args.postgres_url = args.postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
