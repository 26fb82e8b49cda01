"""Schemathesis hooks for the API fuzz run (loaded through SCHEMATHESIS_HOOKS).

Three identities, so that nothing is excluded from fuzzing and the run never fuzzes itself
out of its own account:

- the operations that end an account's sessions or the account itself (delete the account,
  log out everywhere, change the password, end a session) each get a brand-new account,
  registered through the API just for that request: fresh data every time;
- the task and category operations run with a personal access token holding every scope
  (TASKAPI_FUZZ_PAT), of a verified account the test created beforehand: the token path
  of authentication and the scope checks are fuzzed along with the routes;
- every other operation runs as another verified account that the test created beforehand
  (its access token arrives in TASKAPI_FUZZ_TOKEN), so deleting its personal access tokens
  never touches the one above.

And two strategies aimed at what once answered 500 or stalled the server (issue 17):

- every `date-time` (due dates, the due-date filters) is often one at the ends of what
  Python can hold, whose conversion to UTC leaves the years 1 to 9999;
- about one request in ten carries a header that takes the header block past its cap.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import schemathesis
from hypothesis import strategies as st

from taskapi.core.middleware import MAX_HEADER_BYTES

ACCOUNT_ENDING_OPERATIONS = [
    "DELETE /api/v1/users/me",
    "POST /api/v1/auth/logout-all",
    "POST /api/v1/users/me/password",
    "DELETE /api/v1/auth/sessions/{session_id}",
]
TOKEN_OPERATIONS = r"^/api/v1/(tasks|categories)(/|$)"
THROWAWAY_PASSWORD = "Thr0w!Away-Passw0rd"


@schemathesis.auth(refresh_interval=None).apply_to(name=ACCOUNT_ENDING_OPERATIONS)
class ThrowawayAccount:
    """A new account for every request: these operations may destroy the one they use."""

    def get(self, _case: Any, _context: Any) -> str:
        response = httpx.post(
            f"{os.environ['TASKAPI_FUZZ_BASE_URL']}/api/v1/auth/register",
            json={
                "email": f"fuzz-{uuid.uuid4().hex}@example.com",
                "password": THROWAWAY_PASSWORD,
                "full_name": "Throwaway",
            },
            timeout=30,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def set(self, case: Any, data: str, _context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.auth(refresh_interval=None).apply_to(path_regex=TOKEN_OPERATIONS)
class PersonalAccessToken:
    def get(self, _case: Any, _context: Any) -> str:
        return os.environ["TASKAPI_FUZZ_PAT"]

    def set(self, case: Any, data: str, _context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@(
    schemathesis.auth(refresh_interval=None)
    .skip_for(name=ACCOUNT_ENDING_OPERATIONS)
    .skip_for(path_regex=TOKEN_OPERATIONS)
)
class VerifiedAccount:
    def get(self, _case: Any, _context: Any) -> str:
        return os.environ["TASKAPI_FUZZ_TOKEN"]

    def set(self, case: Any, data: str, _context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# The last instants the API accepts (9998 in UTC), and some just past either end.
EXTREME_DATE_TIMES = st.sampled_from(
    [
        "9998-12-31T23:59:59.999999Z",
        "9998-12-31T23:59:59+14:00",
        "9999-01-01T00:59:59+01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59.999999Z",
        "9998-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-23:59",
    ]
)
UTC_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Hypothesis leans towards the bounds of a range: datetime.min and datetime.max themselves.
ANY_DATE_TIMES = st.datetimes(
    min_value=datetime.min, max_value=datetime.max, timezones=st.just(UTC) | UTC_OFFSETS
).map(datetime.isoformat)
schemathesis.openapi.format("date-time", EXTREME_DATE_TIMES | ANY_DATE_TIMES)

OVERSIZED_HEADER = {"X-Fuzz-Padding": "p" * MAX_HEADER_BYTES}


@schemathesis.hook
def flatmap_headers(_context: Any, headers: dict[str, str] | None) -> Any:
    """The generated headers, or (one draw in ten; shrinking goes to the plain ones) the
    same plus one that alone exceeds the header cap: the answer must be the documented 431."""
    plain = dict(headers or {})
    return st.integers(0, 9).map(lambda draw: {**plain, **OVERSIZED_HEADER} if draw == 9 else plain)
