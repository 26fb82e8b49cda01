"""HTTP face of the tasks under /tasks, categories assigned to a task included: parse, call
one service function, shape the answer."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from starlette.convertors import StringConvertor, register_url_convertor

from taskapi.auth.dependencies import SCOPE_REFUSALS, TasksRead, TasksWrite
from taskapi.auth.idempotency import (
    IDEMPOTENCY_ERRORS,
    REPLAYED_HEADER_DOC,
    IdempotentRoute,
    idempotent,
)
from taskapi.auth.models import Scope
from taskapi.core.db import SessionDep
from taskapi.core.errors import BadRequest, PreconditionRequired
from taskapi.core.headers import set_etag, set_location
from taskapi.core.openapi import problem_responses
from taskapi.core.pagination import InvalidCursor, Page, PageParams
from taskapi.tasks import service
from taskapi.tasks.models import Task
from taskapi.tasks.recurrence import InvalidRecurrence
from taskapi.tasks.schemas import (
    StatsQuery,
    TaskCreate,
    TaskListQuery,
    TaskPage,
    TaskRead,
    TaskStats,
    TaskUpdate,
)

router = APIRouter(prefix="/tasks", tags=["tasks"], route_class=IdempotentRoute)


class _TaskIdConvertor(StringConvertor):
    """A path segment that may be a task id: anything but `stats`, which is a route of its
    own, so that PATCH or DELETE /tasks/stats is 405 (GET only), not a 400 about the id.
    FastAPI still validates the segment as a UUID (400 naming task_id)."""

    regex = "(?!stats$)[^/]+"


register_url_convertor("task_id", _TaskIdConvertor())
TASK_PATH = "/{task_id:task_id}"
# Documented with the categories, where a client looks for them.
category_assignment_router = APIRouter(
    prefix="/tasks", tags=["categories"], route_class=IdempotentRoute
)

# A version as its ETag ("3") or bare (3), with optional blanks around it. Nine digits are
# plenty (a task changed every second for 30 years has fewer) and keep the rule a pattern
# the OpenAPI document can state exactly.
IF_MATCH_PATTERN = r'^[ \t]*("[1-9][0-9]{0,8}"|[1-9][0-9]{0,8})[ \t]*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)

_ETAG_HEADER: dict[str, Any] = {
    "ETag": {"description": 'The task\'s version, quoted: `"3"`.', "schema": {"type": "string"}}
}


async def _if_match_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The version you last read, as its ETag (`"3"`) or bare (`3`).',
            json_schema_extra={"pattern": IF_MATCH_PATTERN},
        ),
    ] = None,
) -> int | None:
    if if_match is None:
        return None
    match = _IF_MATCH.match(if_match)
    if match is None:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("header", "If-Match"),
                    "msg": 'Must be a task version such as "3"',
                    "input": if_match,
                }
            ]
        )
    return int(match.group(1).strip('"'))


IfMatchVersion = Annotated[int | None, Depends(_if_match_version)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    summary="Create a task",
    description="Status starts as `pending` and version as 1, whatever the body says. "
    "Send an `Idempotency-Key` to make retries safe.",
    responses={
        201: {
            "headers": {
                **_ETAG_HEADER,
                "Location": {"schema": {"type": "string"}},
                **REPLAYED_HEADER_DOC,
            }
        },
        **problem_responses(400, InvalidRecurrence, 401, *SCOPE_REFUSALS, *IDEMPOTENCY_ERRORS),
    },
)
async def create_task(
    body: TaskCreate,
    session: SessionDep,
    user: TasksWrite,
    _: Annotated[None, idempotent(Scope.TASKS_WRITE)],
    request: Request,
    response: Response,
) -> TaskRead:
    task = await service.create_task(session=session, user=user, data=body)
    set_etag(response, task.version)
    set_location(response, request, "get_task", task_id=str(task.id))
    return task


@router.get(
    "",
    response_model=TaskPage,
    summary="List your tasks",
    description=(
        "Filters combine with AND. Default order: newest first (`created_at desc`). "
        "Deleted tasks appear only with `deleted=true` (the trash), each with `deleted_at`."
    ),
    responses=problem_responses(400, InvalidCursor, 401, *SCOPE_REFUSALS),
)
async def list_tasks(
    query: Annotated[TaskListQuery, Query()],
    paging: Annotated[PageParams, Query()],
    session: SessionDep,
    user: TasksRead,
) -> Page[dict[str, Any]]:
    return await service.list_tasks(session=session, user=user, query=query, paging=paging)


@router.get(
    "/stats",
    response_model=TaskStats,
    summary="Counts for a dashboard",
    description=(
        "Your live tasks by status and by priority, how many are overdue, due today and "
        "due in the next seven days, and how many you completed on each of the last 30 "
        "days. Days are calendar days in `tz` (default UTC)."
    ),
    responses=problem_responses(400, 401, *SCOPE_REFUSALS),
)
async def task_stats(
    query: Annotated[StatsQuery, Query()], session: SessionDep, user: TasksRead
) -> TaskStats:
    return await service.task_stats(session=session, user=user, zone=query.zone)


@router.get(
    TASK_PATH,
    response_model=TaskRead,
    summary="Get one task",
    responses={200: {"headers": _ETAG_HEADER}, **problem_responses(400, 401, *SCOPE_REFUSALS, 404)},
)
async def get_task(
    task_id: uuid.UUID, session: SessionDep, user: TasksRead, response: Response
) -> TaskRead:
    task = await service.get_task(session=session, user=user, task_id=task_id)
    set_etag(response, task.version)
    return task


@router.patch(
    TASK_PATH,
    response_model=TaskRead,
    summary="Change a task",
    description=(
        "Only the fields sent change; `null` clears description, due_date, remind_at or "
        "recurrence. Setting a recurring task to completed also creates the next task of its "
        "series (its id in `next_occurrence_id`). Send the "
        "version you last read as `version` or `If-Match` (if both, they must agree): a "
        "stale one answers 409 `version_conflict` with `current_version`, none answers 428."
    ),
    responses={
        200: {"headers": _ETAG_HEADER},
        **problem_responses(
            400,
            BadRequest,
            InvalidRecurrence,
            401,
            *SCOPE_REFUSALS,
            404,
            service.VersionConflict,
            PreconditionRequired,
        ),
    },
)
async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    if_match: IfMatchVersion,
    session: SessionDep,
    user: TasksWrite,
    response: Response,
) -> TaskRead:
    task = await service.update_task(
        session=session, user=user, task_id=task_id, changes=body, if_match=if_match
    )
    set_etag(response, task.version)
    return task


@router.delete(
    TASK_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a task",
    description="The task moves to the trash (`GET /tasks?deleted=true`), from where "
    "`POST /tasks/{id}/restore` brings it back, until it is purged for good "
    "TRASH_RETENTION_DAYS (30 by default) later. A second delete is 404.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404),
)
async def delete_task(task_id: uuid.UUID, session: SessionDep, user: TasksWrite) -> None:
    await service.delete_task(session=session, user=user, task_id=task_id)


@router.post(
    "/{task_id}/restore",
    response_model=TaskRead,
    summary="Restore a task from the trash",
    description="The task is back where it was, with its categories; its version goes up by "
    "one (new `ETag`). 404 when the task is not in your trash (never deleted, purged, or not "
    "yours). Send an `Idempotency-Key` to make retries safe.",
    responses={
        200: {"headers": {**_ETAG_HEADER, **REPLAYED_HEADER_DOC}},
        **problem_responses(400, 401, *SCOPE_REFUSALS, 404, *IDEMPOTENCY_ERRORS),
    },
)
async def restore_task(
    task_id: uuid.UUID,
    session: SessionDep,
    user: TasksWrite,
    _: Annotated[None, idempotent(Scope.TASKS_WRITE)],
    response: Response,
) -> Task:
    task = await service.restore_task(session=session, user=user, task_id=task_id)
    set_etag(response, task.version)
    return task


@category_assignment_router.post(
    "/{task_id}/categories/{category_id}",
    response_model=TaskRead,
    summary="Assign a category to a task",
    description="Answers the task with its categories; its version goes up by one (new "
    "`ETag`). A missing, deleted or foreign task or category is 404. Send an "
    "`Idempotency-Key` to make retries safe.",
    responses={
        200: {"headers": {**_ETAG_HEADER, **REPLAYED_HEADER_DOC}},
        **problem_responses(
            400, 401, *SCOPE_REFUSALS, 404, service.CategoryAlreadyAssigned, *IDEMPOTENCY_ERRORS
        ),
    },
)
async def assign_category(
    task_id: uuid.UUID,
    category_id: uuid.UUID,
    session: SessionDep,
    user: TasksWrite,
    _: Annotated[None, idempotent(Scope.TASKS_WRITE)],
    response: Response,
) -> Task:
    task = await service.assign_category(
        session=session, user=user, task_id=task_id, category_id=category_id
    )
    set_etag(response, task.version)
    return task


@category_assignment_router.delete(
    "/{task_id}/categories/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a category from a task",
    description="The task's version goes up by one. 404 `category_not_assigned` when the "
    "task does not have the category; 404 for a missing, deleted or foreign task or category.",
    responses=problem_responses(400, 401, *SCOPE_REFUSALS, 404, service.CategoryNotAssigned),
)
async def remove_category(
    task_id: uuid.UUID, category_id: uuid.UUID, session: SessionDep, user: TasksWrite
) -> None:
    await service.remove_category(
        session=session, user=user, task_id=task_id, category_id=category_id
    )
