"""HTTP face of the categories under /categories: parse, call one service function, answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Request, Response, status

from taskapi.auth.dependencies import SCOPE_REFUSALS, CategoriesRead, CategoriesWrite
from taskapi.auth.idempotency import (
    IDEMPOTENCY_ERRORS,
    REPLAYED_HEADER_DOC,
    IdempotentRoute,
    idempotent,
)
from taskapi.auth.models import Scope
from taskapi.categories import service
from taskapi.categories.models import Category
from taskapi.categories.schemas import CategoryCreate, CategoryList, CategoryRead, CategoryUpdate
from taskapi.core.db import SessionDep
from taskapi.core.headers import set_location
from taskapi.core.openapi import problem_responses

router = APIRouter(prefix="/categories", tags=["categories"], route_class=IdempotentRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CategoryRead,
    summary="Create a category",
    description="The name must be unique among your categories; other users' names do not "
    "count. `color` defaults to `#6366F1`. Answers with a `Location` header. Send an "
    "`Idempotency-Key` to make retries safe.",
    responses={
        201: {"headers": {"Location": {"schema": {"type": "string"}}, **REPLAYED_HEADER_DOC}},
        **problem_responses(400, 401, *SCOPE_REFUSALS, service.CategoryExists, *IDEMPOTENCY_ERRORS),
    },
)
async def create_category(
    body: CategoryCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    user: CategoriesWrite,
    _: Annotated[None, idempotent(Scope.CATEGORIES_WRITE)],
) -> Category:
    category = await service.create_category(session=session, user=user, data=body)
    set_location(response, request, "get_category", category_id=str(category.id))
    return category


@router.get(
    "",
    response_model=CategoryList,
    summary="List your categories",
    description="All your categories, sorted by name case-insensitively (Unicode case "
    "folding), names equal but for case in code-point order.",
    responses=problem_responses(401, *SCOPE_REFUSALS),
)
async def list_categories(session: SessionDep, user: CategoriesRead) -> CategoryList:
    categories = await service.list_categories(session=session, user=user)
    return CategoryList(
        items=[CategoryRead.model_validate(category) for category in categories],
        total=len(categories),
    )


@router.get(
    "/{category_id}",
    response_model=CategoryRead,
    summary="Get one of your categories",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def get_category(
    category_id: uuid.UUID, session: SessionDep, user: CategoriesRead
) -> Category:
    return await service.get_category(session=session, user=user, category_id=category_id)


@router.patch(
    "/{category_id}",
    response_model=CategoryRead,
    summary="Rename or recolor a category",
    description="Fields left out stay as they are; `null` is refused. Its tasks keep it.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404, service.CategoryExists),
)
async def update_category(
    category_id: uuid.UUID, body: CategoryUpdate, session: SessionDep, user: CategoriesWrite
) -> Category:
    return await service.update_category(
        session=session, user=user, category_id=category_id, data=body
    )


@router.delete(
    "/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a category",
    description="It is removed from every task that had it; the tasks themselves stay.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def delete_category(
    category_id: uuid.UUID, session: SessionDep, user: CategoriesWrite
) -> None:
    await service.delete_category(session=session, user=user, category_id=category_id)
