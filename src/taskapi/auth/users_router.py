"""The signed-in account: /users/me. Works for unverified accounts too."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from taskapi.auth import service
from taskapi.auth.dependencies import (
    CurrentUser,
    PasswordHasherDep,
    SignedIn,
    UserCacheDep,
)
from taskapi.auth.models import User
from taskapi.auth.personal_tokens import InsufficientScope
from taskapi.auth.schemas import ChangePasswordRequest, UserRead, UserUpdate
from taskapi.core.config import SettingsDep
from taskapi.core.db import SessionDep
from taskapi.core.openapi import problem_responses

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/me",
    response_model=UserRead,
    summary="Your account",
    responses=problem_responses(401, InsufficientScope),
)
async def read_me(user: CurrentUser) -> User:
    return user


@router.patch(
    "/me",
    response_model=UserRead,
    summary="Change your name",
    responses=problem_responses(400, 401, InsufficientScope),
)
async def update_me(
    body: UserUpdate, user: CurrentUser, session: SessionDep, cache: UserCacheDep
) -> User:
    return await service.update_profile(
        session=session, cache=cache, user_id=user.id, full_name=body.full_name
    )


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Change your password",
    description="Ends every other session. This session's refresh token stays valid; "
    "refresh it for a new access token. A wrong current password counts as a failed "
    "sign-in: the fifth in a row locks the account (403 `account_locked`), and a locked "
    "account cannot change its password.",
    responses=problem_responses(
        400, service.IncorrectPassword, 401, service.AccountLocked, InsufficientScope
    ),
)
async def change_password(
    body: ChangePasswordRequest,
    signed_in: SignedIn,
    session: SessionDep,
    cache: UserCacheDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
) -> None:
    await service.change_password(
        session=session,
        cache=cache,
        settings=settings,
        hasher=hasher,
        user_id=signed_in.user.id,
        family_id=signed_in.family_id,
        current_password=body.current_password,
        new_password=body.new_password,
    )


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete your account and everything in it",
    responses=problem_responses(401, InsufficientScope),
)
async def delete_me(user: CurrentUser, session: SessionDep, cache: UserCacheDep) -> None:
    await service.delete_account(session=session, cache=cache, user_id=user.id)
