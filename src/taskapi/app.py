"""Application factory: the lifespan that creates every resource, then middleware, routers
and error handlers."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from taskapi import health, web
from taskapi.auth import router as auth_router
from taskapi.auth import sessions_router, tokens_router, users_router
from taskapi.auth.cache import USER_CACHE_COMPONENT, USER_CACHE_TTL, UserCache
from taskapi.auth.cookies import TOKEN_TRANSPORT_HEADER
from taskapi.auth.dependencies import AUTHENTICATION, AuthState
from taskapi.categories.router import router as categories_router
from taskapi.core.body_limit import BodyLimitMiddleware
from taskapi.core.cache import CacheStore, RedisCacheStore, create_cache_store
from taskapi.core.config import Settings, SettingsState, get_settings
from taskapi.core.db import (
    DatabaseState,
    create_engine,
    create_sessionmaker,
    install_database_error_handlers,
)
from taskapi.core.errors import install_error_handlers
from taskapi.core.events import event_consumers
from taskapi.core.logging import configure_logging
from taskapi.core.metrics import HttpMetricsMiddleware, expose_metrics
from taskapi.core.middleware import RequestContextMiddleware
from taskapi.core.models import utcnow
from taskapi.core.openapi import install_openapi, operation_id
from taskapi.core.ratelimit import RateLimitMiddleware, RateLimitState, create_rate_limiter
from taskapi.core.redis import RedisState, create_redis
from taskapi.core.security import PasswordHasher
from taskapi.core.state import lifespan_state
from taskapi.core.worker import collect_queue_metrics, declare_job_metrics
from taskapi.tasks.router import category_assignment_router
from taskapi.tasks.router import router as tasks_router
from taskapi.webhooks.router import router as webhooks_router
from taskapi.webhooks.service import deliver_event
from taskapi.worker import JOB_KINDS, create_worker

API_PREFIX = "/api/v1"

DESCRIPTION = """
Task management for your own web or mobile app: accounts with verified email, rotating
refresh tokens, tasks with filters, search, sorting, pagination and optimistic locking,
and categories. Errors are RFC 9457 `application/problem+json` with a stable `code`.
"""


API_ROUTERS = (
    tasks_router,
    category_assignment_router,
    categories_router,
    users_router.router,
    webhooks_router,
    tokens_router.router,
    sessions_router.router,
    auth_router.router,
)
"""In the order routing tries them, route by route, twice per request (FastAPI matches,
then selects): what signed-in clients call all the time first, signing in last. The order
decides nothing else: no route of one router has a path another router's would match."""


class AppState(SettingsState, DatabaseState, RedisState, RateLimitState, AuthState):
    """Everything the lifespan creates; each module reads its own part (core/state.py)."""


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[AppState]:
    """Create the app's resources, hand them on, and close them at shutdown (the last
    created first, also when creating a later one fails)."""
    async with AsyncExitStack() as resources:
        engine = create_engine(settings)
        resources.push_async_callback(engine.dispose)
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        if redis is not None:
            resources.push_async_callback(redis.aclose)
        password_hasher = PasswordHasher(max_workers=settings.password_hash_threads)
        resources.callback(password_hasher.shutdown)
        if settings.worker_enabled:
            await resources.enter_async_context(_embedded_worker(settings, engine))
        user_cache_store = create_cache_store(
            settings,
            redis,
            component=USER_CACHE_COMPONENT,
            ttl_seconds=USER_CACHE_TTL.total_seconds(),
        )
        yield AppState(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine, info=event_consumers([deliver_event])),
            read_sessionmaker=create_sessionmaker(
                engine, read_only=True, pooler=settings.database_pooler
            ),
            redis=redis,
            rate_limiter=create_rate_limiter(settings, redis),
            read_along_for_user=_read_along_for_user(user_cache_store),
            user_cache=UserCache(user_cache_store),
            password_hasher=password_hasher,
        )


def _read_along_for_user(store: CacheStore) -> Callable[[uuid.UUID], str | None]:
    """The caller's user cache entry, which the rate limiter reads in its own round trip
    when both are in Redis."""
    if isinstance(store, RedisCacheStore):
        return lambda user_id: store.redis_key(str(user_id))
    return lambda _user_id: None


@asynccontextmanager
async def _embedded_worker(settings: Settings, engine: AsyncEngine) -> AsyncIterator[None]:
    """The job worker inside the server process, so one command runs everything. At
    shutdown it stops claiming and finishes or releases the jobs it runs."""
    worker = create_worker(settings, engine)
    running = asyncio.create_task(worker.run(), name="taskapi embedded worker")
    try:
        yield
    finally:
        worker.request_stop()
        await running


async def _collect_job_metrics(request: Request) -> None:
    await collect_queue_metrics(
        lifespan_state(request.scope, DatabaseState)["engine"], JOB_KINDS, utcnow()
    )


def _lifespan(
    settings: Settings, *, freeze_startup_objects: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[AppState]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[AppState]:
        async with open_resources(settings) as state:
            if freeze_startup_objects:
                gc.collect()
                gc.freeze()
            yield state

    return lifespan


def create_served_app() -> FastAPI:
    """The app as `taskapi serve` runs it in each worker process.

    Once it has started, what exists (modules, routes, schemas, SQLAlchemy mappers, pools)
    lives as long as the process, and CPython's collector would walk all of it on every
    full collection: 0.11 to 0.14 s each in a profile of GET /users/me, a stall for every
    request in flight. `gc.freeze()` moves it out of the collector's reach; reference
    counting still frees any of it that goes. Loggers are cached on first use: structlog
    otherwise assembles a logger on every call, a quarter of the access line's cost.
    Neither in the tests: they start hundreds of apps in one process, whose garbage must
    stay collectable, and structlog's `capture_logs` sees only loggers it can reconfigure.
    """
    return create_app(served=True)


def create_app(settings: Settings | None = None, *, served: bool = False) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings, cache_loggers=served)

    app = FastAPI(
        title="taskapi",
        version=health.APP_VERSION,
        description=DESCRIPTION,
        contact={"name": "taskapi maintainers", "url": "https://taskapi.dev"},
        license_info={"name": "MIT", "identifier": "MIT"},
        servers=[{"url": "/", "description": "The host that serves this document"}],
        generate_unique_id_function=operation_id,
        lifespan=_lifespan(settings, freeze_startup_objects=served),
        # Starlette's trailing-slash redirect builds an absolute URL from the Host header,
        # which the client chooses; a path that is not a route is a 404 instead.
        redirect_slashes=False,
        openapi_tags=[
            {"name": "auth", "description": "Registration, verification, sessions, passwords"},
            {"name": "users", "description": "The signed-in account"},
            {"name": "tasks", "description": "Your tasks"},
            {"name": "categories", "description": "Your categories and their tasks"},
            {"name": "webhooks", "description": "Your webhooks and their deliveries"},
            {"name": "health", "description": "Liveness and readiness"},
        ],
    )
    install_openapi(app, authentication=AUTHENTICATION)
    install_error_handlers(app)
    install_database_error_handlers(app)
    app.include_router(health.router)
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    if settings.web_app_enabled:
        web.install(app)
    _add_middleware(app, settings)
    return app


CORS_ALLOW_METHODS = ["GET", "POST", "PATCH", "DELETE"]
CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "X-Request-ID",
    TOKEN_TRANSPORT_HEADER,
]
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "ETag",
    "Idempotent-Replayed",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
]


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The request passes these from the outside in:

    1. RequestContextMiddleware: request id, access log, security headers, last-resort 500.
       Outermost, so every answer of the layers below (413, 429, CORS preflight) has them.
    2. HttpMetricsMiddleware (ENABLE_METRICS): counts and times every answer.
    3. ProxyHeadersMiddleware: scope["client"] from X-Forwarded-For, only when the direct
       peer is a TRUSTED_PROXIES address (rightmost untrusted hop), for everything below.
    4. CORSMiddleware: answers preflights itself, so they are never rate limited.
    5. BodyLimitMiddleware: 413 for a body over 1 MiB before anything reads or trusts it.
    6. RateLimitMiddleware (ENABLE_RATE_LIMITING): per user or client IP, with the limiter
       the lifespan created (Redis, or this process's memory).
    7. The application: routing, exception handlers, dependencies (authentication).

    Starlette makes the most recently added middleware the outermost: added in reverse.
    """
    if settings.enable_rate_limiting:
        app.add_middleware(RateLimitMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_cors_origins,
        allow_credentials=True,
        allow_methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
    )
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    if settings.enable_metrics:
        app.add_middleware(HttpMetricsMiddleware)
        declare_job_metrics(JOB_KINDS)
        expose_metrics(app, before_scrape=_collect_job_metrics)
    app.add_middleware(RequestContextMiddleware, hsts=settings.is_production)


OPENAPI_SNAPSHOT = Path("openapi.json")
REGENERATE_OPENAPI = f"uv run python -m taskapi.app {OPENAPI_SNAPSHOT}"


def write_openapi(path: Path) -> None:
    """The document the app serves at /openapi.json, as the committed snapshot holds it."""
    document = create_app().openapi()
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_openapi(Path(sys.argv[1]) if len(sys.argv) > 1 else OPENAPI_SNAPSHOT)
