"""The caller's personal access tokens under /auth/tokens: made, listed and deleted by a
password sign-in only (a token cannot make or see tokens)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from taskapi.auth import personal_tokens
from taskapi.auth.dependencies import CurrentUser
from taskapi.auth.personal_tokens import InsufficientScope
from taskapi.auth.schemas import (
    PersonalTokenCreate,
    PersonalTokenCreated,
    PersonalTokenList,
    PersonalTokenRead,
)
from taskapi.core.db import SessionDep
from taskapi.core.openapi import component_ref, problem_responses

router = APIRouter(prefix="/auth/tokens", tags=["auth"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PersonalTokenCreated,
    summary="Create a personal access token",
    description="For scripts and integrations: send it as `Authorization: Bearer tapi_…`. "
    "It can do only what its scopes allow and never use the account routes. The value is "
    f"in this answer only. At most {personal_tokens.MAX_TOKENS_PER_USER} unexpired tokens "
    "(400 `too_many_tokens`).",
    responses={
        # The schema as the model renders it: FastAPI's own drops the example's nulls.
        201: {"content": {"application/json": {"schema": component_ref(PersonalTokenCreated)}}},
        **problem_responses(400, personal_tokens.TooManyTokens, 401, InsufficientScope),
    },
)
async def create_token(
    body: PersonalTokenCreate, user: CurrentUser, session: SessionDep
) -> PersonalTokenCreated:
    created = await personal_tokens.create(
        session=session,
        user_id=user.id,
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
    )
    return PersonalTokenCreated(
        **PersonalTokenRead.model_validate(created.row).model_dump(), token=created.token
    )


@router.get(
    "",
    response_model=PersonalTokenList,
    summary="List your personal access tokens",
    description="Unexpired tokens, newest first, without their values.",
    responses=problem_responses(401, InsufficientScope),
)
async def list_tokens(user: CurrentUser, session: SessionDep) -> PersonalTokenList:
    tokens = await personal_tokens.list_live(session=session, user_id=user.id)
    return PersonalTokenList(items=[PersonalTokenRead.model_validate(token) for token in tokens])


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a personal access token",
    description="It is refused from the next request on, on every instance.",
    responses=problem_responses(400, 401, InsufficientScope, 404),
)
async def delete_token(token_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> None:
    await personal_tokens.delete_token(session=session, user_id=user.id, token_id=token_id)
