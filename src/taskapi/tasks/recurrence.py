"""Recurring tasks: the RFC 5545 RRULE subset a task accepts, and its next occurrence.

Accepted: `FREQ=DAILY|WEEKLY|MONTHLY|YEARLY` (required) with optional `INTERVAL`, `BYDAY`,
`BYMONTHDAY`, `COUNT` or `UNTIL`, as `KEY=VALUE` pairs joined by `;` (an `RRULE:` prefix is
allowed). Anything else is refused with `invalid_recurrence`; an accepted rule is stored in
one canonical spelling.

Rules are expanded with python-dateutil's `rrule` in UTC, from the task's stored due date:
"every day at 09:00" means 09:00 UTC on every day, so across a daylight saving time change
it stays 09:00 UTC (10:00 or 11:00 in Berlin, depending on the season). Dates a rule names
that do not exist are skipped, as RFC 5545 says: monthly on the 31st skips the months
without one, yearly on 29 February waits for the next leap year.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Literal

from dateutil import rrule

from taskapi.core.errors import BadRequest

MAX_RULE_LENGTH = 500
MAX_INTERVAL = 1000
MAX_COUNT = 10000
Frequency = Literal[0, 1, 2, 3, 4, 5, 6]
"""rrule's frequency constants."""
FREQUENCIES: dict[str, Frequency] = {
    "DAILY": rrule.DAILY,
    "WEEKLY": rrule.WEEKLY,
    "MONTHLY": rrule.MONTHLY,
    "YEARLY": rrule.YEARLY,
}
WEEKDAYS = {
    "MO": rrule.MO,
    "TU": rrule.TU,
    "WE": rrule.WE,
    "TH": rrule.TH,
    "FR": rrule.FR,
    "SA": rrule.SA,
    "SU": rrule.SU,
}
KEYS = ("FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "COUNT", "UNTIL")
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_INTEGER = re.compile(r"^[+-]?\d{1,5}$")
_UNTIL_DATE_TIME = "%Y%m%dT%H%M%SZ"
_UNTIL_DATE = "%Y%m%d"


class InvalidRecurrence(BadRequest):
    code = "invalid_recurrence"

    def __init__(self, message: str) -> None:
        super().__init__(
            f"The recurrence is not one this API accepts: {message}.",
            extra={"errors": [{"field": "recurrence", "message": message}]},
        )


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A parsed rule, its parts as given (upper case)."""

    parts: dict[str, str]

    @classmethod
    def parse(cls, rule: str) -> Recurrence:
        """The rule, checked against the accepted subset; InvalidRecurrence otherwise."""
        if len(rule) > MAX_RULE_LENGTH:
            raise InvalidRecurrence(f"at most {MAX_RULE_LENGTH} characters")
        text = rule.strip().upper().removeprefix("RRULE:")
        parts: dict[str, str] = {}
        for item in filter(None, text.split(";")):
            key, equals, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not equals or not value:
                raise InvalidRecurrence(f"{item!r} is not KEY=VALUE")
            if key not in KEYS:
                raise InvalidRecurrence(f"{key} is not supported (only {', '.join(KEYS)})")
            if key in parts:
                raise InvalidRecurrence(f"{key} is given twice")
            parts[key] = value
        recurrence = cls(parts)
        recurrence._check()
        return recurrence

    def _check(self) -> None:
        parts = self.parts
        frequency = parts.get("FREQ")
        if frequency not in FREQUENCIES:
            raise InvalidRecurrence("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
        if "INTERVAL" in parts:
            _integer(parts["INTERVAL"], "INTERVAL", 1, MAX_INTERVAL)
        if "COUNT" in parts:
            _integer(parts["COUNT"], "COUNT", 1, MAX_COUNT)
        if "COUNT" in parts and "UNTIL" in parts:
            raise InvalidRecurrence("COUNT and UNTIL cannot be combined")
        if "UNTIL" in parts:
            _until(parts["UNTIL"])
        if "BYDAY" in parts:
            numbered = any(day.n is not None for day in _weekdays(parts["BYDAY"]))
            if numbered and frequency not in ("MONTHLY", "YEARLY"):
                raise InvalidRecurrence(
                    "a numbered BYDAY (such as 1MO) needs FREQ=MONTHLY or YEARLY"
                )
        if "BYMONTHDAY" in parts:
            if frequency == "WEEKLY":
                raise InvalidRecurrence("BYMONTHDAY cannot be used with FREQ=WEEKLY")
            for day in parts["BYMONTHDAY"].split(","):
                _integer(day.strip(), "BYMONTHDAY", -31, 31, zero=False)

    def __str__(self) -> str:
        """The canonical spelling: keys in one order, no spaces, upper case."""
        return ";".join(f"{key}={self.parts[key]}" for key in KEYS if key in self.parts)

    def next_after(self, due: datetime) -> tuple[datetime, Recurrence] | None:
        """The occurrence after `due` (the due date of the task just completed) and the rule
        the next task carries (COUNT one less), or None when the series has ended. `due` is
        the series' start: occurrences keep its time of day, in UTC."""
        parts = dict(self.parts)
        remaining = int(parts.pop("COUNT")) - 1 if "COUNT" in parts else None
        if remaining == 0:
            return None
        start = due.astimezone(UTC).replace(tzinfo=None)
        following = self._rule(start).after(start, inc=False)
        if following is None:
            return None
        if remaining is not None:
            parts["COUNT"] = str(remaining)
        return following.replace(tzinfo=UTC), Recurrence(parts)

    def _rule(self, start: datetime) -> rrule.rrule:
        parts = self.parts
        return rrule.rrule(
            FREQUENCIES[parts["FREQ"]],
            dtstart=start,
            interval=int(parts.get("INTERVAL", "1")),
            byweekday=_weekdays(parts["BYDAY"]) if "BYDAY" in parts else None,
            bymonthday=(
                [int(day) for day in parts["BYMONTHDAY"].split(",")]
                if "BYMONTHDAY" in parts
                else None
            ),
            until=_until(parts["UNTIL"]) if "UNTIL" in parts else None,
        )


def _weekdays(value: str) -> list[rrule.weekday]:
    """BYDAY's weekdays: `MO`, or numbered within the month or year (`1MO`, `-1FR`)."""
    weekdays = []
    for day in value.split(","):
        match = _BYDAY.match(day.strip())
        if match is None:
            raise InvalidRecurrence(f"BYDAY {day!r} is not a weekday such as MO or -1FR")
        weekday = WEEKDAYS[match.group(2)]
        if match.group(1) is not None:
            weekday = weekday(_integer(match.group(1), "the BYDAY number", -53, 53, zero=False))
        weekdays.append(weekday)
    return weekdays


def _integer(value: str, name: str, low: int, high: int, *, zero: bool = True) -> int:
    if not _INTEGER.match(value):
        raise InvalidRecurrence(f"{name} must be a whole number")
    number = int(value)
    if not low <= number <= high or (number == 0 and not zero):
        nonzero = ", not 0" if not zero else ""
        raise InvalidRecurrence(f"{name} must be between {low} and {high}{nonzero}")
    return number


def _until(value: str) -> datetime:
    """UNTIL as a naive UTC time: a date-time in UTC (`20301231T170000Z`), or a date
    (`20301231`), which includes that whole day."""
    try:
        if "T" in value:
            return datetime.strptime(value, _UNTIL_DATE_TIME)
        day = datetime.strptime(value, _UNTIL_DATE)
    except ValueError:
        raise InvalidRecurrence(
            "UNTIL must be a UTC date-time such as 20301231T170000Z or a date such as 20301231"
        ) from None
    return datetime.combine(day.date(), time.max)
