"""Task rules and queries, categories assigned to a task included. Every query goes through
`_owned`, so another user's task and a deleted one are invisible in exactly the same way as
a missing one."""

from __future__ import annotations

import enum
import functools
import operator
import uuid
import zoneinfo
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import ConfigDict
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    Update,
    Uuid,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import Label
from sqlalchemy.types import TypeEngine

from taskapi.auth.models import User
from taskapi.categories import service as categories_service
from taskapi.categories.models import Category
from taskapi.categories.service import CategoryNotFound
from taskapi.core.db import is_foreign_key_violation
from taskapi.core.errors import (
    AccountGone,
    BadRequest,
    Conflict,
    NotFound,
    PreconditionRequired,
    Problem,
)
from taskapi.core.events import Render, publish
from taskapi.core.models import new_id, utcnow
from taskapi.core.pagination import (
    InvalidCursor,
    Page,
    PageParams,
    SortOrder,
    decode_cursor,
    encode_cursor,
)
from taskapi.tasks.jobs import arm_reminder, cancel_reminder
from taskapi.tasks.models import (
    Task,
    TaskCounter,
    TaskPriority,
    TaskStatus,
    TitleSortKey,
    task_categories,
)
from taskapi.tasks.recurrence import InvalidRecurrence, Recurrence
from taskapi.tasks.schemas import (
    STATS_DAYS,
    DayCount,
    PriorityCounts,
    StatusCounts,
    TaskCreate,
    TaskListQuery,
    TaskRead,
    TaskSortField,
    TaskStats,
    TaskUpdate,
    in_supported_years,
)

LIKE_ESCAPE = "\\"


class TaskNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Task not found.")


class VersionConflictProblem(Problem):
    """The task changed since the client read it; `current_version` is its version now."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://taskapi.dev/problems/version-conflict",
                "title": "Conflict",
                "status": 409,
                "detail": "The task has changed since you read it; reload it and apply your "
                "change again.",
                "code": "version_conflict",
                "request_id": "5f0c6c8e0d6c4a47b6a8f0d2f6c3e9a1",
                "current_version": 4,
            }
        }
    )

    current_version: int


class VersionConflict(Conflict):
    code = "version_conflict"
    problem_model = VersionConflictProblem

    def __init__(self, current_version: int) -> None:
        super().__init__(
            "The task has changed since you read it; reload it and apply your change again.",
            extra={"current_version": current_version},
        )


class CategoryAlreadyAssigned(Conflict):
    code = "category_already_assigned"

    def __init__(self) -> None:
        super().__init__("The task already has this category.")


class CategoryNotAssigned(NotFound):
    code = "category_not_assigned"

    def __init__(self) -> None:
        super().__init__("The task does not have this category.")


IdOrParam = uuid.UUID | BindParameter[uuid.UUID]
"""An id, or a bind parameter standing for one in a statement built once."""


def _owned(user_id: IdOrParam) -> ColumnElement[bool]:
    """The one scope of every task query: this user's tasks that are not deleted."""
    return and_(Task.user_id == user_id, Task.deleted_at.is_(None))


def _in_trash(user_id: IdOrParam) -> ColumnElement[bool]:
    """This user's deleted tasks, until they are purged."""
    return and_(Task.user_id == user_id, Task.deleted_at.is_not(None))


def _owned_task(user_id: IdOrParam, task_id: IdOrParam) -> ColumnElement[bool]:
    return and_(_owned(user_id), Task.id == task_id)


# Built once: composing the expression and its cache key cost more than running it.
_TASK_ENTITY = (
    select(Task)
    .where(_owned_task(bindparam("user_id"), bindparam("task_id")))
    .options(joinedload(Task.categories))
)
_CATEGORY_OF_TASK = {
    column.key: column.label(f"category_{column.key}") for column in Category.__table__.c
}
"""A category's columns as the join of one task reads them: by key, under a label each."""
_READ_TASK = (
    select(*Task.__table__.c, *_CATEGORY_OF_TASK.values())
    .select_from(Task)
    .outerjoin(task_categories, task_categories.c.task_id == Task.id)
    .outerjoin(Category, Category.id == task_categories.c.category_id)
    .where(_owned_task(bindparam("user_id"), bindparam("task_id")))
    .order_by(Category.name, Category.id)
)


_INSERT_TASK = insert(Task)


async def create_task(*, session: AsyncSession, user: User, data: TaskCreate) -> TaskRead:
    """A new task refers to no row but its owner: a foreign-key violation means the account
    was deleted after this request authenticated (a 401, as on the next request).

    A Core INSERT of every column, the answer built from the same values: a new task's
    row holds nothing the database adds, and an ORM instance and its flush cost more than
    the insert itself."""
    recurrence = _checked_recurrence(data.recurrence, due_date=data.due_date)
    now = utcnow()
    task: dict[str, Any] = {
        "id": new_id(),
        "user_id": user.id,
        "title": data.title,
        "description": data.description,
        "status": TaskStatus.PENDING,
        "priority": data.priority,
        "due_date": data.due_date,
        "deleted_at": None,
        "completed_at": None,
        "remind_at": data.remind_at,
        "recurrence": recurrence,
        "next_occurrence_id": None,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    connection = await session.connection()
    try:
        await connection.execute(_INSERT_TASK, task)
    except IntegrityError as error:
        if is_foreign_key_violation(error):
            raise AccountGone() from error
        raise
    if data.remind_at is not None:
        await arm_reminder(session, task_id=task["id"], remind_at=data.remind_at)
    read = TaskRead.model_validate({**task, "categories": []})
    await publish(session, user_id=user.id, type="task.created", render=_rendered(read))
    return read


def _as_read(task: Task, *, session: AsyncSession | None = None) -> Render:
    """The task as TaskRead shows it, for an event; with `session`, its categories are
    read again first (after a change to them)."""

    async def render() -> dict[str, Any]:
        if session is not None:
            await session.refresh(task, attribute_names=["categories"])
        return TaskRead.model_validate(task).model_dump(mode="json")

    return render


def _rendered(task: TaskRead) -> Render:
    """An event's data from the answer already built."""

    async def render() -> dict[str, Any]:
        return task.model_dump(mode="json")

    return render


def _as_id(task_id: uuid.UUID) -> Render:
    async def render() -> dict[str, Any]:
        return {"id": str(task_id)}

    return render


def _checked_recurrence(rule: str | None, *, due_date: datetime | None) -> str | None:
    """The rule in canonical spelling; InvalidRecurrence if it is not one we accept or the
    task has no due date to count from."""
    if rule is None:
        return None
    canonical = str(Recurrence.parse(rule))
    if due_date is None:
        raise InvalidRecurrence("a recurring task needs a due_date")
    return canonical


async def get_task(*, session: AsyncSession, user: User, task_id: uuid.UUID) -> TaskRead:
    """The user's live task with its categories; TaskNotFound (404) otherwise.

    One query: the categories come by a join, a row each (one row with none), one round
    trip fewer than a second query. Core rows to the answer directly: no ORM instance is
    built for a read."""
    connection = await session.connection()
    rows = (await connection.execute(_READ_TASK, {"user_id": user.id, "task_id": task_id})).all()
    if not rows:
        raise TaskNotFound
    task = {column.key: rows[0]._mapping[column] for column in Task.__table__.c}
    task["categories"] = [
        {key: row._mapping[label] for key, label in _CATEGORY_OF_TASK.items()}
        for row in rows
        if row.category_id is not None
    ]
    return TaskRead.model_validate(task)


async def _task_entity(*, session: AsyncSession, user: User, task_id: uuid.UUID) -> Task:
    """The user's live task as an ORM instance with its categories loaded, for a change to
    its categories; TaskNotFound (404) otherwise."""
    task = await session.scalar(_TASK_ENTITY, {"user_id": user.id, "task_id": task_id})
    if task is None:
        raise TaskNotFound
    return task


@dataclass(frozen=True)
class ListStatements:
    count: Select[int] | None
    """None for a page by cursor: counting every match is what cursors avoid."""
    page: Select[Any]
    params: dict[str, Any]
    """The values of both statements' bound parameters."""


TASK_COLUMNS = tuple(Task.__table__.c)
_CATEGORIES_OF_TASKS = (
    select(task_categories.c.task_id, *Category.__table__.c)
    .join(Category, Category.id == task_categories.c.category_id)
    .where(task_categories.c.task_id.in_(bindparam("task_ids", expanding=True)))
    .order_by(Category.name, Category.id)
)


def list_statements(
    *, user_id: uuid.UUID, query: TaskListQuery, paging: PageParams, dialect: Dialect
) -> ListStatements:
    """The count and the page of a task list, as `list_tasks` runs them (EXPLAIN reads them).

    The page asks for one row more than the limit: whether it comes back says whether there
    is a next page, without a second query. The unfiltered total is the trigger-kept
    counter (migration 0002): one row read, however many tasks the user has. The trash
    (`deleted=true`) lists deleted tasks instead, newest deletion first, and counts them.

    The statements are built once per shape of list (`_ListShape`), with bound parameters
    for every value: composing them anew cost a page of tasks more than 500 Python calls.
    """
    order = _order(query)
    after = None if paging.cursor is None else _decode_position(paging.cursor, order, dialect)
    values = _filter_values(query)
    keyset = None
    if after is not None:
        keyset = _Keyset.NULL_DUE_DATE if order.due_dates and after.key is None else _Keyset.KEY
    count, page = _statements_of(
        _ListShape(order, frozenset(values), query.deleted, keyset, dialect.name)
    )
    params = {"user_id": user_id, "limit": paging.limit + 1, **values}
    if after is None:
        params["offset"] = paging.offset
    else:
        params["after_id"] = after.task_id
        if keyset is _Keyset.KEY:
            params["after_key"] = after.key
    return ListStatements(count=count, page=page, params=params)


class _Keyset(enum.Enum):
    """How a page by cursor continues: after a sort key and id, or (due dates, which sort
    NULLs last) among the tasks with no due date, after an id."""

    KEY = "key"
    NULL_DUE_DATE = "null_due_date"


@dataclass(frozen=True)
class _ListShape:
    """What decides a list's statements, as opposed to the values bound into them."""

    order: _Order
    filters: frozenset[str]
    deleted: bool
    keyset: _Keyset | None
    dialect: str


@functools.lru_cache(maxsize=512)
def _statements_of(shape: _ListShape) -> tuple[Select[int] | None, Select[Any]]:
    user_id = bindparam("user_id", type_=Task.user_id.type)
    filters = _filters(shape.filters)
    criteria = [_in_trash(user_id) if shape.deleted else _owned(user_id), *filters]
    key = _order_key(shape.order, shape.dialect)
    sort_key: Label[Any] = key.label("sort_key")
    ordered_key = key.asc() if shape.order.ascending else key.desc()
    if shape.order.due_dates:
        ordered_key = ordered_key.nulls_last()
    page: Select[Any] = (
        select(*TASK_COLUMNS, sort_key)
        .where(*criteria)
        .order_by(ordered_key, Task.id.asc() if shape.order.ascending else Task.id.desc())
        .limit(bindparam("limit", type_=Integer()))
    )
    if shape.keyset is not None:
        return None, page.where(_after(shape.order, key, sort_key.type, shape.keyset))
    count: Select[int] = (
        select(func.count()).select_from(Task).where(*criteria)
        if filters or shape.deleted
        else select(
            func.coalesce(
                select(TaskCounter.live_tasks)
                .where(TaskCounter.user_id == user_id)
                .scalar_subquery(),
                0,
            )
        )
    )
    return count, page.offset(bindparam("offset", type_=Integer()))


async def list_tasks(
    *, session: AsyncSession, user: User, query: TaskListQuery, paging: PageParams
) -> Page[dict[str, Any]]:
    """A page of tasks as plain rows with their categories.

    Core rows, not ORM objects: a page is read-only, and building twenty instrumented
    instances with their collections cost more than both queries. Two queries whatever
    the page size: the page, then every category of its tasks.
    """
    # Core statements go straight to the connection: Session.execute would route them
    # through the ORM's execution machinery for nothing.
    connection = await session.connection()
    statements = list_statements(
        user_id=user.id, query=query, paging=paging, dialect=connection.dialect
    )
    total = (
        None
        if statements.count is None
        else (await connection.scalar(statements.count, statements.params) or 0)
    )
    rows = (
        []
        if total is not None and paging.offset >= total
        else (await connection.execute(statements.page, statements.params)).all()
    )
    next_cursor = None
    if len(rows) > paging.limit:
        rows = rows[: paging.limit]
        next_cursor = _encode_position(_order(query), rows[-1].sort_key, rows[-1].id)
    items = [dict(row._mapping) for row in rows]
    await _attach_categories(connection, items)
    return Page(
        items=items,
        total=total,
        page=None if paging.cursor is not None else paging.page,
        limit=paging.limit,
        next_cursor=next_cursor,
    )


async def _attach_categories(connection: AsyncConnection, tasks: list[dict[str, Any]]) -> None:
    by_task: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for task in tasks:
        task["categories"] = by_task.setdefault(task["id"], [])
    if not by_task:
        return
    rows = await connection.execute(_CATEGORIES_OF_TASKS, {"task_ids": list(by_task)})
    for row in rows:
        category = dict(row._mapping)
        by_task[category.pop("task_id")].append(category)


@dataclass(frozen=True)
class _Position:
    """Where the previous page ended: its last row's sort key and id."""

    key: Any
    task_id: uuid.UUID


TRASH_ORDER = "deleted_at"
"""The one order of the trash, as its cursors name it."""


@dataclass(frozen=True)
class _Order:
    """How a list is ordered: the sort a cursor names and its direction."""

    name: str
    ascending: bool

    @property
    def direction(self) -> str:
        return (SortOrder.ASC if self.ascending else SortOrder.DESC).value

    @property
    def due_dates(self) -> bool:
        """Due dates sort NULLs last both ways."""
        return self.name == TaskSortField.DUE_DATE.value


def _order(query: TaskListQuery) -> _Order:
    if query.deleted:
        return _Order(TRASH_ORDER, ascending=False)
    return _Order(query.sort_by.value, ascending=query.sort_order is SortOrder.ASC)


def _order_key(order: _Order, dialect: str) -> SQLColumnExpression[Any]:
    if order.name == TRASH_ORDER:
        return Task.deleted_at
    return _sort_key(TaskSortField(order.name), dialect)


def _encode_position(order: _Order, key: Any, task_id: uuid.UUID) -> str:
    if isinstance(key, datetime):
        key = key.isoformat()
    elif isinstance(key, enum.Enum):
        key = key.value
    return encode_cursor({"s": order.name, "o": order.direction, "k": key, "i": str(task_id)})


def _decode_position(cursor: str, order: _Order, dialect: Dialect) -> _Position:
    """A cursor only continues the list it came from: same sort field and direction."""
    position = decode_cursor(cursor)
    if position.get("s") != order.name or position.get("o") != order.direction:
        raise InvalidCursor
    raw_key = position.get("k")
    try:
        task_id = uuid.UUID(str(position.get("i")))
        key = _key_from_json(order.name, raw_key, dialect)
    except (TypeError, ValueError) as error:
        raise InvalidCursor from error
    return _Position(key=key, task_id=task_id)


def _key_from_json(field: str, raw: Any, dialect: Dialect) -> Any:
    match field:
        case TaskSortField.CREATED_AT | TaskSortField.UPDATED_AT | "deleted_at":
            return in_supported_years(datetime.fromisoformat(raw))
        case TaskSortField.DUE_DATE:
            return None if raw is None else in_supported_years(datetime.fromisoformat(raw))
        case TaskSortField.PRIORITY | TaskSortField.STATUS:
            members = TaskPriority if field == TaskSortField.PRIORITY else TaskStatus
            if dialect.name == "postgresql":
                return members(raw)
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise TypeError("ordinal expected")
            return raw
        case TaskSortField.TITLE:
            if not isinstance(raw, str):
                raise TypeError("text expected")
            if "\x00" in raw:
                # No title holds one (core/text.py), and PostgreSQL refuses it in a query.
                raise ValueError("NUL in a title")
            return raw
        case _:
            raise ValueError(f"unknown sort {field!r}")


def _after(
    order: _Order, key: SQLColumnExpression[Any], key_type: TypeEngine[Any], keyset: _Keyset
) -> ColumnElement[bool]:
    """Rows strictly after the cursor's (`after_key`, `after_id`) in the list's order: a
    row-value comparison, which PostgreSQL answers with one index seek. Due dates sort
    NULLs last both ways."""
    beyond = operator.gt if order.ascending else operator.lt
    after_id = bindparam("after_id", type_=Task.id.type)
    if keyset is _Keyset.NULL_DUE_DATE:
        return and_(Task.due_date.is_(None), beyond(Task.id, after_id))
    # Bound with the key's own type (UTC handling, enums).
    after_key = bindparam("after_key", type_=key_type)
    later: ColumnElement[bool] = beyond(tuple_(key, Task.id), tuple_(after_key, after_id))
    if order.due_dates:
        return or_(Task.due_date.is_(None), later)
    return later


def _filter_values(query: TaskListQuery) -> dict[str, Any]:
    """The filters the query sets, by the name of the parameter each binds."""
    values = {
        "status": query.status,
        "priority": query.priority,
        "due_date_from": query.due_date_from,
        "due_date_to": query.due_date_to,
        "category_id": query.category_id,
        "q": None if query.q is None else f"%{_escape_like(query.q)}%",
    }
    return {name: value for name, value in values.items() if value is not None}


_SEARCH_PATTERN = bindparam("q", type_=Task.title.type)
_FILTERS: dict[str, ColumnElement[bool]] = {
    "status": Task.status == bindparam("status"),
    "priority": Task.priority == bindparam("priority"),
    "due_date_from": Task.due_date >= bindparam("due_date_from"),
    "due_date_to": Task.due_date <= bindparam("due_date_to"),
    "category_id": exists().where(
        task_categories.c.task_id == Task.id,
        task_categories.c.category_id == bindparam("category_id"),
    ),
    "q": or_(
        Task.title.ilike(_SEARCH_PATTERN, escape=LIKE_ESCAPE),
        Task.description.ilike(_SEARCH_PATTERN, escape=LIKE_ESCAPE),
    ),
}
"""The criterion of each filter a list may set, under the name of the parameter it binds
(the names `_filter_values` gives the values under)."""


def _filters(names: frozenset[str]) -> list[ColumnElement[bool]]:
    return [criterion for name, criterion in _FILTERS.items() if name in names]


def _escape_like(text: str) -> str:
    """The user's `%` and `_` are characters to find, not wildcards."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text


def _sort_key(field: TaskSortField, dialect: str) -> SQLColumnExpression[Any]:
    match field:
        case TaskSortField.PRIORITY:
            return _ordinal(Task.priority, TaskPriority, dialect)
        case TaskSortField.STATUS:
            return _ordinal(Task.status, TaskStatus, dialect)
        case TaskSortField.TITLE:
            return TitleSortKey(Task.title)
        case TaskSortField.DUE_DATE:
            return Task.due_date
        case TaskSortField.UPDATED_AT:
            return Task.updated_at
        case TaskSortField.CREATED_AT:
            return Task.created_at


def _ordinal(
    column: SQLColumnExpression[Any], members: type[enum.StrEnum], dialect: str
) -> SQLColumnExpression[Any]:
    """Enum members in declaration order. A PostgreSQL enum already sorts that way (and can
    use its index); SQLite stores the text, which would sort alphabetically."""
    if dialect == "postgresql":
        return column
    return case({member: position for position, member in enumerate(members)}, value=column)


def _expected_version(body_version: int | None, if_match: int | None) -> int:
    if body_version is None:
        if if_match is None:
            raise PreconditionRequired(
                "Send the version you last read, as `version` in the body or as If-Match."
            )
        return if_match
    if if_match is not None and if_match != body_version:
        raise BadRequest("`version` in the body and If-Match disagree.")
    return body_version


_BEFORE_THE_CHANGE = (
    Task.version,
    Task.status,
    Task.title,
    Task.description,
    Task.priority,
    Task.due_date,
    Task.remind_at,
    Task.recurrence,
    Task.next_occurrence_id,
)


async def update_task(
    *,
    session: AsyncSession,
    user: User,
    task_id: uuid.UUID,
    changes: TaskUpdate,
    if_match: int | None = None,
) -> TaskRead:
    """Apply `changes` only if the task is still at the version the client read.

    The check and the write are one UPDATE, so of concurrent writers holding the same
    version exactly one wins; the others find no row and get VersionConflict (and their
    transaction, with any next occurrence it created, rolls back). A change that depends on
    the task as it was (its status, recurrence or due date) reads it first, at the version
    the UPDATE then requires.

    Completing a recurring task creates the next one in the same transaction. A reminder is
    armed when `remind_at` is set and when a task leaves `completed` with one still ahead;
    it is cancelled when `remind_at` is cleared or the task is completed.

    The UPDATE is a Core statement built once per set of changed fields, and the answer is
    read from its RETURNING row: building the statement, and loading an ORM instance from
    it, cost more than running it.
    """
    expected = _expected_version(changes.version, if_match)
    values: dict[str, Any] = changes.model_dump(exclude_unset=True, exclude={"version"})
    now = utcnow()
    before = None
    if values.keys() & {"status", "recurrence"} or (
        "due_date" in values and values["due_date"] is None
    ):
        before = await _task_before_change(session, user, task_id, expected)
    if before is not None and values.keys() & {"recurrence", "due_date"}:
        values["recurrence"] = _checked_recurrence(
            values.get("recurrence", before["recurrence"]),
            due_date=values.get("due_date", before["due_date"]),
        )
    completing = (
        before is not None
        and values.get("status") is TaskStatus.COMPLETED
        and before["status"] is not TaskStatus.COMPLETED
    )
    if completing and before is not None and before["next_occurrence_id"] is None:
        following = await _create_next_occurrence(
            session, user=user, task_id=task_id, task={**before, **values}
        )
        if following is not None:
            values["next_occurrence_id"] = following
    connection = await session.connection()
    row = (
        await connection.execute(
            _update_statement(tuple(sorted(values)), completes=_completes(values)),
            {
                **{f"new_{name}": value for name, value in values.items()},
                "owner_id": user.id,
                "changed_id": task_id,
                "expected": expected,
                "now": now,
            },
        )
    ).one_or_none()
    if row is None:
        current_version = await session.scalar(
            select(Task.version).where(_owned_task(user.id, task_id))
        )
        if current_version is None:
            raise TaskNotFound
        raise VersionConflict(current_version)
    task = dict(row._mapping)
    await _attach_categories(connection, [task])
    reopened = (
        before is not None
        and before["status"] is TaskStatus.COMPLETED
        and task["status"] is not TaskStatus.COMPLETED
    )
    if task["status"] is TaskStatus.COMPLETED or (
        "remind_at" in values and task["remind_at"] is None
    ):
        await cancel_reminder(session, task_id=task_id)
    elif (
        task["remind_at"] is not None
        and task["remind_at"] > now
        and ("remind_at" in values or reopened)
    ):
        await arm_reminder(session, task_id=task_id, remind_at=task["remind_at"])
    read = TaskRead.model_validate(task)
    await publish(
        session,
        user_id=user.id,
        type="task.completed" if completing else "task.updated",
        render=_rendered(read),
    )
    return read


def _completes(values: Mapping[str, Any]) -> bool | None:
    """Whether the change sets the status to completed (None: it leaves the status)."""
    if "status" not in values:
        return None
    return values["status"] is TaskStatus.COMPLETED


@functools.cache
def _update_statement(fields: tuple[str, ...], *, completes: bool | None) -> Update:
    """UPDATE … RETURNING of a change to `fields` (each bound as `new_<field>`), at version
    `expected`, of task `changed_id` owned by `owner_id` (a column's own name may not be a
    parameter's in an UPDATE). One per set of fields a client sends, a few
    hundred at most.

    With a status change, `completed_at` follows it: a task already completed keeps its
    completion time, a newly completed one gets `now`, any other status clears it. The
    right-hand side reads the row as it was."""
    values: dict[str, Any] = {field: bindparam(f"new_{field}") for field in fields}
    if completes is not None:
        values["completed_at"] = (
            case((Task.status == TaskStatus.COMPLETED, Task.completed_at), else_=bindparam("now"))
            if completes
            else None
        )
    return (
        update(Task)
        .where(
            _owned_task(bindparam("owner_id"), bindparam("changed_id")),
            Task.version == bindparam("expected"),
        )
        .values(**values, version=Task.version + 1, updated_at=bindparam("now"))
        .returning(*TASK_COLUMNS)
    )


async def _task_before_change(
    session: AsyncSession, user: User, task_id: uuid.UUID, expected: int
) -> dict[str, Any]:
    """The task's columns a change depends on, if it is at the expected version."""
    before = (
        await session.execute(select(*_BEFORE_THE_CHANGE).where(_owned_task(user.id, task_id)))
    ).one_or_none()
    if before is None:
        raise TaskNotFound
    if before.version != expected:
        raise VersionConflict(before.version)
    return dict(before._mapping)


async def _create_next_occurrence(
    session: AsyncSession, *, user: User, task_id: uuid.UUID, task: dict[str, Any]
) -> uuid.UUID | None:
    """The next task of a recurring one being completed (`task`: its values after the
    change): same title, description, priority, categories and rule (COUNT one less), due at
    the rule's next occurrence after the completed task's due date, its reminder as far
    before that as the completed task's was. None when the rule has no more occurrences, or
    none within the years a client may send (1 to 9998): the series ends there."""
    rule, due = task["recurrence"], task["due_date"]
    if rule is None or due is None:
        return None
    following = Recurrence.parse(rule).next_after(due)
    if following is None:
        return None
    next_due, next_rule = following
    remind_at = task["remind_at"]
    try:
        in_supported_years(next_due)
        next_remind = (
            None if remind_at is None else in_supported_years(remind_at + (next_due - due))
        )
    except (ValueError, OverflowError):
        return None
    now = utcnow()
    created = Task(
        user_id=user.id,
        title=task["title"],
        description=task["description"],
        priority=task["priority"],
        due_date=next_due,
        remind_at=next_remind,
        recurrence=str(next_rule),
        status=TaskStatus.PENDING,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(created)
    await session.flush()
    await session.execute(
        insert(task_categories).from_select(
            ["task_id", "category_id"],
            select(literal(created.id, Uuid()), task_categories.c.category_id).where(
                task_categories.c.task_id == task_id
            ),
        )
    )
    if next_remind is not None:
        await arm_reminder(session, task_id=created.id, remind_at=next_remind)
    await publish(
        session,
        user_id=user.id,
        type="task.created",
        render=_as_read(created, session=session),
    )
    return created.id


async def delete_task(*, session: AsyncSession, user: User, task_id: uuid.UUID) -> None:
    """Soft delete: the row stays with `deleted_at` set and drops out of every query, and
    its reminder is cancelled."""
    deleted = (
        await session.execute(
            update(Task)
            .where(_owned_task(user.id, task_id))
            .values(deleted_at=utcnow())
            .returning(Task.remind_at)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if deleted is None:
        raise TaskNotFound
    if deleted.remind_at is not None:
        await cancel_reminder(session, task_id=task_id)
    await publish(session, user_id=user.id, type="task.deleted", render=_as_id(task_id))


async def restore_task(*, session: AsyncSession, user: User, task_id: uuid.UUID) -> Task:
    """Take the task out of the trash: live again, with version + 1, and its reminder armed
    again if it is still ahead."""
    now = utcnow()
    task = await session.scalar(
        update(Task)
        .where(_in_trash(user.id), Task.id == task_id)
        .values(deleted_at=None, version=Task.version + 1, updated_at=now)
        .returning(Task)
        .options(selectinload(Task.categories))
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    if task is None:
        raise TaskNotFound
    if (
        task.remind_at is not None
        and task.remind_at > now
        and task.status is not TaskStatus.COMPLETED
    ):
        await arm_reminder(session, task_id=task.id, remind_at=task.remind_at)
    await publish(session, user_id=user.id, type="task.restored", render=_as_read(task))
    return task


async def touch_task(*, session: AsyncSession, task: Task) -> None:
    """Record a change made beside the task's own columns (its categories): version + 1 and
    a new updated_at, in one atomic UPDATE, so a client holding the old version gets 409."""
    now = utcnow()
    version = await session.scalar(
        update(Task)
        .where(_owned_task(task.user_id, task.id))
        .values(version=Task.version + 1, updated_at=now)
        .returning(Task.version)
        .execution_options(synchronize_session=False)
    )
    if version is None:
        raise TaskNotFound
    set_committed_value(task, "version", version)
    set_committed_value(task, "updated_at", now)


async def assign_category(
    *, session: AsyncSession, user: User, task_id: uuid.UUID, category_id: uuid.UUID
) -> Task:
    """Link the user's category to the user's task; the task's version goes up by one.

    The composite primary key of task_categories decides a duplicate, so two concurrent
    assignments of one pair give one success and one CategoryAlreadyAssigned.
    """
    task = await _task_entity(session=session, user=user, task_id=task_id)
    category = await categories_service.get_category(
        session=session, user=user, category_id=category_id
    )
    try:
        async with session.begin_nested():
            await session.execute(
                insert(task_categories).values(task_id=task.id, category_id=category.id)
            )
    except IntegrityError as error:
        if await _is_assigned(session=session, task_id=task.id, category_id=category.id):
            raise CategoryAlreadyAssigned() from error
        # Not a duplicate, so a foreign key: the category was deleted meanwhile.
        raise CategoryNotFound() from error
    await touch_task(session=session, task=task)
    await session.refresh(task, attribute_names=["categories"])
    await publish(session, user_id=user.id, type="task.updated", render=_as_read(task))
    return task


async def remove_category(
    *, session: AsyncSession, user: User, task_id: uuid.UUID, category_id: uuid.UUID
) -> None:
    """Unlink the category from the task; the task's version goes up by one."""
    task = await _task_entity(session=session, user=user, task_id=task_id)
    category = await categories_service.get_category(
        session=session, user=user, category_id=category_id
    )
    removed = await session.scalar(
        delete(task_categories)
        .where(
            task_categories.c.task_id == task.id,
            task_categories.c.category_id == category.id,
        )
        .returning(task_categories.c.task_id)
    )
    if removed is None:
        raise CategoryNotAssigned
    await touch_task(session=session, task=task)
    await publish(
        session,
        user_id=user.id,
        type="task.updated",
        render=_as_read(task, session=session),
    )


async def _is_assigned(
    *, session: AsyncSession, task_id: uuid.UUID, category_id: uuid.UUID
) -> bool:
    linked = await session.scalar(
        select(
            exists().where(
                task_categories.c.task_id == task_id,
                task_categories.c.category_id == category_id,
            )
        )
    )
    return bool(linked)


def _start_of_day(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    """Midnight of `day` in `zone`, as UTC (a day is 23 or 25 hours across a DST change)."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


async def task_stats(
    *, session: AsyncSession, user: User, zone: zoneinfo.ZoneInfo, now: datetime | None = None
) -> TaskStats:
    """Counts over the user's live tasks, with days as calendar days in `zone`.

    Two queries: one grouped count with the due-date sums beside it, and the completion
    times of the window, which are bucketed here: SQLite has no time zones, and a day's
    bounds in UTC move with daylight saving time.
    """
    now = now or utcnow()
    today = now.astimezone(zone).date()
    tomorrow_starts = _start_of_day(today + timedelta(days=1), zone)
    week_ends = _start_of_day(today + timedelta(days=7), zone)
    window_starts = _start_of_day(today - timedelta(days=STATS_DAYS - 1), zone)

    open_task = Task.status != TaskStatus.COMPLETED
    due = Task.due_date

    def count_where(*conditions: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

    groups = (
        await session.execute(
            select(
                Task.status,
                Task.priority,
                func.count(),
                count_where(open_task, due < now),
                count_where(open_task, due >= now, due < tomorrow_starts),
                count_where(open_task, due >= now, due < week_ends),
            )
            .where(_owned(user.id))
            .group_by(Task.status, Task.priority)
        )
    ).all()
    by_status = Counter({member.value: 0 for member in TaskStatus})
    by_priority = Counter({member.value: 0 for member in TaskPriority})
    overdue = due_today = due_next_7_days = 0
    for status, priority, count, late, today_count, week_count in groups:
        by_status[TaskStatus(status).value] += count
        by_priority[TaskPriority(priority).value] += count
        overdue += int(late)
        due_today += int(today_count)
        due_next_7_days += int(week_count)

    completions = await session.scalars(
        select(Task.completed_at).where(
            _owned(user.id),
            Task.completed_at >= window_starts,
            Task.completed_at < tomorrow_starts,
        )
    )
    per_day = Counter(moment.astimezone(zone).date() for moment in completions if moment)
    days = [today - timedelta(days=offset) for offset in range(STATS_DAYS - 1, -1, -1)]
    return TaskStats(
        by_status=StatusCounts(**by_status),
        by_priority=PriorityCounts(**by_priority),
        overdue=overdue,
        due_today=due_today,
        due_next_7_days=due_next_7_days,
        completed_per_day=[DayCount(date=day, count=per_day[day]) for day in days],
    )
