"""The caller's sessions under /auth/sessions: every sign-in that can still be refreshed, and
ending one of them (a lost phone, a shared computer)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from taskapi.auth import families
from taskapi.auth.dependencies import CurrentUser, SignedIn, UserCacheDep
from taskapi.auth.personal_tokens import InsufficientScope
from taskapi.auth.schemas import SessionList, SessionRead
from taskapi.core.db import SessionDep
from taskapi.core.openapi import problem_responses

router = APIRouter(prefix="/auth/sessions", tags=["auth"])


@router.get(
    "",
    response_model=SessionList,
    summary="List your sessions",
    description="One per sign-in that can still be refreshed, newest first; `current` marks "
    "the one the calling access token belongs to.",
    responses=problem_responses(401, InsufficientScope),
)
async def list_sessions(signed_in: SignedIn, session: SessionDep) -> SessionList:
    live = await families.list_live(session=session, user_id=signed_in.user.id)
    return SessionList(
        items=[
            SessionRead(
                id=family.id,
                created_at=family.created_at,
                last_used_at=family.last_used_at,
                expires_at=family.expires_at,
                user_agent=family.user_agent,
                ip=family.ip,
                current=family.id == signed_in.family_id,
            )
            for family in live
        ]
    )


@router.delete(
    "/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End a session",
    description="Its refresh tokens and every access token issued in it are refused from "
    "the next request on, on every instance. 404 when it is not one of your live sessions.",
    responses=problem_responses(400, 401, InsufficientScope, 404),
)
async def end_session(
    session_id: uuid.UUID, user: CurrentUser, session: SessionDep, cache: UserCacheDep
) -> None:
    await families.end_session(session=session, cache=cache, user_id=user.id, family_id=session_id)
