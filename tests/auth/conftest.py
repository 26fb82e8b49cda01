"""Auth fixtures: the console backend's mailbox and a hasher that counts its work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from tests.support.apps import state_of
from tests.support.auth import CountingHasher, Mailbox


@pytest.fixture
def mailbox(app: FastAPI) -> Iterator[Mailbox]:
    """Depends on `app` so the app's logging set-up runs before the capture starts."""
    with capture_logs() as logs:
        yield Mailbox(app, logs)


@pytest.fixture
def counting_hasher(app: FastAPI) -> Iterator[CountingHasher]:
    original = state_of(app)["password_hasher"]
    hasher = CountingHasher()
    state_of(app)["password_hasher"] = hasher
    yield hasher
    state_of(app)["password_hasher"] = original
    hasher.shutdown()
