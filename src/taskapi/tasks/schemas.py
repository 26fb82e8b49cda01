"""Bodies and query parameters of the task endpoints.

Every datetime that comes in is made timezone-aware (a naive one is taken as UTC) and must
fall within the years 1 to 9998 in UTC. Every datetime that goes out is UTC with an offset
(`Z`).
"""

from __future__ import annotations

import enum
import re
import uuid
import zoneinfo
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from taskapi.categories.schemas import CategoryRead
from taskapi.core.models import as_utc
from taskapi.core.pagination import PageRead, SortOrder
from taskapi.core.schemas import Omittable
from taskapi.core.text import NoNul
from taskapi.tasks.models import TaskPriority, TaskStatus

MAX_VERSION = 2**31 - 1
"""`tasks.version` is a 32-bit integer; a larger number can never match and must not reach
the database driver."""

MAX_SEARCH_LENGTH = 200


# What the documented `date-time` format looks like; the offset may be left out (taken as
# UTC), as may seconds. Pydantic alone would also take a bare date or a Unix timestamp
# ("0.5", 1700000000): for a due date these are client bugs, not dates.
_ISO_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
)


def _iso_date_time(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE_TIME.match(value):
        return value
    raise ValueError("Must be a date-time such as 2030-12-01T17:00:00Z")


MIN_YEAR = 1
MAX_YEAR = 9998
"""A year short of datetime's end, so the value can still be shown in any time zone."""
_OUT_OF_RANGE = f"Must be within the years {MIN_YEAR} to {MAX_YEAR} (in UTC)"


def in_supported_years(value: datetime) -> datetime:
    """The value in UTC, or ValueError when that leaves the supported years: converting
    9999-12-31T23:59:59-01:00 to UTC would otherwise overflow (a 500), as would any later
    arithmetic on a value at datetime's edge."""
    try:
        utc = as_utc(value)
    except OverflowError:
        raise ValueError(_OUT_OF_RANGE) from None
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(_OUT_OF_RANGE)
    return utc


def _not_in_past(value: datetime) -> datetime:
    if value < datetime.now(UTC):
        raise ValueError("Due date must not be in the past")
    return value


def _reminder_not_in_past(value: datetime) -> datetime:
    if value < datetime.now(UTC):
        raise ValueError("Reminder time must not be in the past")
    return value


UTCDatetime = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime the API answers with."""
DatetimeInput = Annotated[
    datetime, BeforeValidator(_iso_date_time), AfterValidator(in_supported_years)
]
"""A datetime a client sends."""
DueDate = Annotated[DatetimeInput, AfterValidator(_not_in_past)]
RemindAt = Annotated[DatetimeInput, AfterValidator(_reminder_not_in_past)]
RecurrenceRule = Annotated[str, NoNul()]
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200), NoNul()
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), NoNul()]
SearchText = Annotated[str, NoNul()]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]

_TASK_EXAMPLE: dict[str, JsonValue] = {
    "id": "01937a4e-9d3c-7f52-8b68-4d2e3c5f6a71",
    "title": "Write the quarterly report",
    "description": "Numbers from finance, charts from the dashboard.",
    "status": "pending",
    "priority": "high",
    "due_date": "2030-12-01T17:00:00Z",
    "version": 1,
    "categories": [
        {
            "id": "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f60",
            "name": "Work",
            "color": "#6366F1",
            "created_at": "2026-11-21T08:00:00Z",
            "updated_at": "2026-11-21T08:00:00Z",
        }
    ],
    "created_at": "2026-11-21T08:00:00Z",
    "updated_at": "2026-11-21T08:00:00Z",
    "remind_at": "2030-12-01T08:00:00Z",
    "recurrence": "FREQ=MONTHLY;BYMONTHDAY=1",
}

_REMIND_AT = (
    "When to email you a reminder naming the task, its due date and its link; not in the "
    "past. Changing it moves the reminder; completing or deleting the task cancels it."
)
_RECURRENCE = (
    "An RRULE: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY with optional INTERVAL, BYDAY, BYMONTHDAY, "
    "COUNT or UNTIL, such as FREQ=WEEKLY;BYDAY=MO,WE. Needs a due date. Expanded in UTC from "
    "the due date: completing the task creates the next one, due at the next occurrence. "
    "Anything else is 400 invalid_recurrence."
)


class TaskCreate(BaseModel):
    """Unknown fields (`id`, `status`, `version`, …) are ignored: the server sets those."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "title": "Write the quarterly report",
                "description": "Numbers from finance, charts from the dashboard.",
                "priority": "high",
                "due_date": "2030-12-01T17:00:00Z",
            }
        }
    )

    title: Title = Field(description="3-200 characters after trimming.")
    description: Description | None = Field(None, description="At most 2000 characters.")
    priority: TaskPriority = TaskPriority.MEDIUM
    due_date: DueDate | None = Field(
        None,
        description="Not in the past, not after 9998 (UTC). Without an offset it is UTC.",
    )
    remind_at: RemindAt | None = Field(None, description=_REMIND_AT)
    recurrence: RecurrenceRule | None = Field(None, description=_RECURRENCE)


class TaskUpdate(BaseModel):
    """A partial update: an absent field stays as it is, `null` clears description or
    due_date. The task's current `version` is required here or as `If-Match`."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"status": "in_progress", "due_date": None, "version": 1}}
    )

    title: Omittable[Title] = Field(None, description="3-200 characters after trimming.")
    description: Description | None = Field(None, description="`null` clears it.")
    status: Omittable[TaskStatus] = None
    priority: Omittable[TaskPriority] = None
    due_date: DueDate | None = Field(
        None, description="Not in the past, not after 9998 (UTC); `null` clears it."
    )
    remind_at: RemindAt | None = Field(None, description=_REMIND_AT + " `null` clears it.")
    recurrence: RecurrenceRule | None = Field(
        None, description=_RECURRENCE + " `null` ends the series."
    )
    version: Version | None = Field(
        None,
        description="The version you last read. If `If-Match` is sent too, the two must agree.",
    )


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": _TASK_EXAMPLE})

    id: uuid.UUID
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    due_date: UTCDatetime | None
    version: int = Field(description="Grows by one with every change; send it back to PATCH.")
    categories: list[CategoryRead]
    created_at: UTCDatetime
    updated_at: UTCDatetime
    deleted_at: UTCDatetime | None = Field(
        None, description="When it went to the trash; null for a task that is not deleted."
    )
    completed_at: UTCDatetime | None = Field(
        None, description="When its status became completed; null while it is not completed."
    )
    remind_at: UTCDatetime | None = Field(
        description="When the reminder email goes out; null for none."
    )
    recurrence: str | None = Field(description="The RRULE, in canonical spelling; null for none.")
    next_occurrence_id: uuid.UUID | None = Field(
        None,
        description="The task that completing this recurring one created: the next in its "
        "series; null until then, or when the series ended.",
    )


class TaskPage(PageRead[TaskRead]):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "items": [_TASK_EXAMPLE],
                "total": 3,
                "page": 1,
                "limit": 1,
                "pages": 3,
                "next_cursor": "WyIyMDI2LTExLTIxVDA4OjAwOjAwWiIsIjAxOTM3YTRlIl0",
            }
        }
    )


class TaskSortField(enum.StrEnum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    DUE_DATE = "due_date"
    PRIORITY = "priority"
    TITLE = "title"
    STATUS = "status"


class TaskListQuery(BaseModel):
    status: TaskStatus | None = None
    priority: TaskPriority | None = None
    due_date_from: DatetimeInput | None = Field(None, description="Due at or after (inclusive).")
    due_date_to: DatetimeInput | None = Field(None, description="Due at or before (inclusive).")
    category_id: uuid.UUID | None = Field(None, description="Only tasks in this category.")
    q: SearchText | None = Field(
        None,
        max_length=MAX_SEARCH_LENGTH,
        description="Case-insensitive substring of the title or the description.",
    )
    sort_by: TaskSortField = Field(
        TaskSortField.CREATED_AT,
        description=(
            "priority sorts low < medium < high; status pending < in_progress < completed; "
            "title case-insensitively by character code; tasks without a due date come last "
            "in both directions. Ties are broken by id in the same direction."
        ),
    )
    sort_order: SortOrder = SortOrder.DESC
    deleted: bool = Field(
        False,
        description=(
            "true: your deleted tasks (the trash) instead, newest deletion first, until "
            "they are purged; the filters apply, sort_by and sort_order do not."
        ),
    )

    @field_validator("q")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    @field_validator("due_date_to")
    @classmethod
    def _range_in_order(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("due_date_from")
        if value is not None and start is not None and value < start:
            raise ValueError("Must not be before due_date_from")
        return value


STATS_DAYS = 30
"""How many days `completed_per_day` covers, today included."""
MAX_TIME_ZONE_LENGTH = 64


@cache
def _time_zone_names() -> frozenset[str]:
    """The IANA names of the tz database (system or `tzdata`), without the files a system
    zoneinfo directory keeps beside them."""
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules"}


class StatsQuery(BaseModel):
    tz: str = Field(
        "UTC",
        max_length=MAX_TIME_ZONE_LENGTH,
        description="IANA time zone (`Europe/Berlin`) whose calendar days count as days.",
    )

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _time_zone_names():
            raise ValueError("Must be an IANA time zone such as Europe/Berlin")
        return value

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)


class StatusCounts(BaseModel):
    pending: int
    in_progress: int
    completed: int


class PriorityCounts(BaseModel):
    low: int
    medium: int
    high: int


class DayCount(BaseModel):
    date: date
    count: int


class TaskStats(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "by_status": {"pending": 4, "in_progress": 2, "completed": 9},
                "by_priority": {"low": 3, "medium": 8, "high": 4},
                "overdue": 1,
                "due_today": 2,
                "due_next_7_days": 5,
                "completed_per_day": [
                    {"date": "2026-11-01", "count": 0},
                    {"date": "2026-11-02", "count": 3},
                ],
            }
        }
    )

    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: int = Field(description="Not completed, due before now.")
    due_today: int = Field(description="Not completed, due from now to the end of today.")
    due_next_7_days: int = Field(
        description="Not completed, due from now to the end of the sixth day after today "
        "(seven calendar days, today included)."
    )
    completed_per_day: list[DayCount] = Field(
        description=f"Tasks completed on each of the last {STATS_DAYS} days (by "
        "`completed_at`), oldest first, days without any included."
    )
