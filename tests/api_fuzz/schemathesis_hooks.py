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
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import schemathesis

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
