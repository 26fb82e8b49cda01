"""Application factory: settings, resources, middleware, routers and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from taskapi import health
from taskapi.auth import router as auth_router
from taskapi.auth import users_router
from taskapi.auth.cache import USER_CACHE_COMPONENT, USER_CACHE_TTL, UserCache
from taskapi.auth.emails import create_email_backend
from taskapi.categories.router import router as categories_router
from taskapi.categories.router import task_categories_router
from taskapi.core.body_limit import BodyLimitMiddleware
from taskapi.core.cache import create_cache_store
from taskapi.core.config import Settings, get_settings
from taskapi.core.db import create_engine, create_sessionmaker, install_database_error_handlers
from taskapi.core.errors import install_error_handlers
from taskapi.core.logging import configure_logging
from taskapi.core.metrics import create_instrumentator, expose_metrics
from taskapi.core.middleware import RequestContextMiddleware
from taskapi.core.ratelimit import (
    MemorySlidingWindow,
    RateLimitMiddleware,
    RedisSlidingWindow,
    SlidingWindowLimiter,
)
from taskapi.core.redis import create_redis
from taskapi.core.security import PasswordHasher
from taskapi.tasks.router import router as tasks_router

API_PREFIX = "/api/v1"

DESCRIPTION = """
Task management for your own web or mobile app: accounts with verified email, rotating
refresh tokens, tasks with filters, search, sorting, pagination and optimistic locking,
and categories. Errors are RFC 9457 `application/problem+json` with a stable `code`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        app.state.password_hasher.shutdown()
        if app.state.redis is not None:
            await app.state.redis.aclose()
        await app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    app = FastAPI(
        title="taskapi",
        version=health.APP_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "auth", "description": "Registration, verification, sessions, passwords"},
            {"name": "users", "description": "The signed-in account"},
            {"name": "tasks", "description": "Your tasks"},
            {"name": "categories", "description": "Your categories and their tasks"},
            {"name": "health", "description": "Liveness and readiness"},
        ],
    )
    app.state.settings = settings
    app.state.engine = create_engine(settings)
    app.state.sessionmaker = create_sessionmaker(app.state.engine)
    app.state.read_sessionmaker = create_sessionmaker(app.state.engine, read_only=True)
    app.state.redis = create_redis(settings.redis_url) if settings.redis_url else None
    app.state.user_cache = UserCache(
        create_cache_store(
            settings,
            app.state.redis,
            component=USER_CACHE_COMPONENT,
            ttl_seconds=USER_CACHE_TTL.total_seconds(),
        )
    )
    app.state.password_hasher = PasswordHasher()
    app.state.email_backend = create_email_backend(settings)

    install_error_handlers(app)
    install_database_error_handlers(app)
    app.include_router(health.router)
    app.include_router(tasks_router, prefix=API_PREFIX)
    app.include_router(auth_router.router, prefix=API_PREFIX)
    app.include_router(users_router.router, prefix=API_PREFIX)
    app.include_router(categories_router, prefix=API_PREFIX)
    app.include_router(task_categories_router, prefix=API_PREFIX)
    _add_middleware(app, settings)
    return app


CORS_ALLOW_METHODS = ["GET", "POST", "PATCH", "DELETE"]
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "If-Match", "X-Request-ID"]
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "ETag",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
]


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The request passes these from the outside in:

    1. RequestContextMiddleware: request id, access log, security headers, last-resort 500.
       Outermost, so every answer of the layers below (413, 429, CORS preflight) has them.
    2. Prometheus instrumentation (ENABLE_METRICS): counts and times every answer.
    3. ProxyHeadersMiddleware: scope["client"] from X-Forwarded-For, only when the direct
       peer is a TRUSTED_PROXIES address (rightmost untrusted hop), for everything below.
    4. CORSMiddleware: answers preflights itself, so they are never rate limited.
    5. BodyLimitMiddleware: 413 for a body over 1 MiB before anything reads or trusts it.
    6. RateLimitMiddleware (ENABLE_RATE_LIMITING): per user or client IP.
    7. The application: routing, exception handlers, dependencies (authentication).

    Starlette makes the most recently added middleware the outermost: added in reverse.
    """
    if settings.enable_rate_limiting:
        app.add_middleware(
            RateLimitMiddleware, limiter=_rate_limiter(app, settings), settings=settings
        )
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
        instrumentator = create_instrumentator()
        instrumentator.instrument(app)
        expose_metrics(app, instrumentator)
    app.add_middleware(RequestContextMiddleware, hsts=settings.is_production)


def _rate_limiter(app: FastAPI, settings: Settings) -> SlidingWindowLimiter:
    if app.state.redis is None:
        return MemorySlidingWindow()
    return RedisSlidingWindow(app.state.redis, key_prefix=settings.redis_key_prefix + "ratelimit:")
