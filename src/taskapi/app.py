"""Application factory: settings, resources, middleware, routers and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from taskapi import health
from taskapi.categories.router import router as categories_router
from taskapi.core.config import Settings, get_settings
from taskapi.core.db import create_engine, create_sessionmaker
from taskapi.core.errors import install_error_handlers
from taskapi.core.logging import configure_logging
from taskapi.core.middleware import RequestContextMiddleware
from taskapi.core.redis import create_redis
from taskapi.core.security import PasswordHasher

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
    app.state.redis = create_redis(settings.redis_url) if settings.redis_url else None
    app.state.password_hasher = PasswordHasher()

    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(categories_router, prefix=API_PREFIX)
    app.add_middleware(RequestContextMiddleware, hsts=settings.is_production)
    return app
