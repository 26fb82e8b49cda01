"""Liveness (the process serves) and readiness (its database and Redis answer)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from taskapi.core.db import DatabaseState, check_database
from taskapi.core.redis import RedisState
from taskapi.core.state import lifespan_state

CHECK_TIMEOUT_SECONDS = 2.0
APP_VERSION = version("taskapi")

CheckResult = Literal["ok", "error", "disabled"]

router = APIRouter(tags=["health"])


class HealthState(DatabaseState, RedisState):
    """The connections the readiness check tries."""


class HealthChecks(BaseModel):
    database: CheckResult
    redis: CheckResult


class HealthRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "status": "healthy",
                "version": "0.1.0",
                "checks": {"database": "ok", "redis": "ok"},
                "timestamp": "2026-11-21T08:00:00Z",
            }
        }
    )

    status: Literal["healthy", "degraded"]
    version: str
    checks: HealthChecks
    timestamp: datetime


class LiveRead(BaseModel):
    status: Literal["alive"]


async def _database_check(engine: AsyncEngine) -> CheckResult:
    try:
        await asyncio.wait_for(check_database(engine), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return "error"
    return "ok"


async def _redis_check(redis: Redis | None) -> CheckResult:
    if redis is None:
        return "disabled"
    try:
        await asyncio.wait_for(redis.ping(), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return "error"
    return "ok"


@router.get(
    "/health",
    response_model=HealthRead,
    summary="Readiness: database and Redis reachable",
    responses={503: {"model": HealthRead, "description": "A dependency is failing"}},
)
async def health(request: Request) -> Response:
    state = lifespan_state(request.scope, HealthState)
    database, redis = await asyncio.gather(
        _database_check(state["engine"]), _redis_check(state["redis"])
    )
    checks = HealthChecks(database=database, redis=redis)
    healthy = "error" not in (database, redis)
    body = HealthRead(
        status="healthy" if healthy else "degraded",
        version=APP_VERSION,
        checks=checks,
        timestamp=datetime.now(UTC),
    )
    return Response(
        body.model_dump_json(), status_code=200 if healthy else 503, media_type="application/json"
    )


@router.get("/health/live", response_model=LiveRead, summary="Liveness: the process serves")
async def live() -> LiveRead:
    return LiveRead(status="alive")
