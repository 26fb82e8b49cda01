"""Browser tests: a real `taskapi serve`, a real SMTP inbox (aiosmtpd) and Debian's
chromium driven by Playwright, with axe-core on every screen and screenshots of each.

Chromium is Debian's (`apt-get install -y --no-install-recommends chromium`), never one
that `playwright install` downloads. The tests carry `BROWSER_TESTS`: the `browser` marker
and needs_services("chromium"), so they are skipped with that hint where it is missing,
and fail under TASKAPI_TEST_REQUIRE_SERVICES=1 (as `.ci/run` sets).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.support.backends import database_env
from tests.support.processes import CHROMIUM, free_port
from tests.support.smtp import SmtpServer

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=375, height=812)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
MAIL_TIMEOUT_SECONDS = 15.0
PASSWORD = "Str0ng!Passw0rd"
BROWSER_ZONE = ZoneInfo("Europe/Berlin")
# Answers the browser logs as console errors on its own; the app shows them on the page.
EXPECTED_CONSOLE = re.compile(
    r"Failed to load resource: the server responded with a status of (4\d\d|503)"
)


BROWSER_TESTS = [
    pytest.mark.browser,
    pytest.mark.needs_services("chromium", reason="drives the web app in a real browser"),
]


# --- a real inbox ---------------------------------------------------------------------------

LINK = re.compile(r"https?://[^\s\"<>]+/(verify-email|reset-password)\?token=[0-9a-f]{64}")


class Inbox(SmtpServer):
    """What the app's SMTP backend delivered to a loopback aiosmtpd server."""

    async def link(self, to: str, kind: str, *, after: int = 0) -> str:
        """The `kind` link ("verify-email" / "reset-password") of the first such email to
        `to` among the messages from index `after` on; waits for it to arrive."""
        deadline = time.monotonic() + MAIL_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for _envelope, message in self.messages[after:]:
                if message["To"] != to:
                    continue
                body = message.get_body(preferencelist=("plain",))
                assert body is not None
                found = LINK.search(body.get_content())
                if found and found.group(1) == kind:
                    return found.group(0)
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {kind} email to {to} within {MAIL_TIMEOUT_SECONDS} s")


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    server = Inbox(port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


# --- a real server --------------------------------------------------------------------------


@dataclass
class LiveServer:
    base_url: str
    process: asyncio.subprocess.Process
    log: Path

    async def stop(self) -> None:
        """SIGTERM this one process (by its PID), SIGKILL if it does not exit in time."""
        if self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_SECONDS)


ServerFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture(scope="module")
async def start_server(
    new_database_url: Callable[[], Awaitable[str]],
    inbox: Inbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ServerFactory]:
    """Starts `python -m taskapi serve` on a new database of the configured backend (and
    the configured Redis), mailing through `inbox`; FRONTEND_URL is left unset, so the
    emailed links are the server's own default. Stops each one by its PID."""
    started: list[LiveServer] = []

    async def start(**env: str) -> LiveServer:
        port = free_port()
        workdir = tmp_path_factory.mktemp("server")
        log = workdir / "server.log"
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TEST_", "PROMETHEUS_MULTIPROC", "FRONTEND_URL"))
        }
        redis_url = os.environ.get("TEST_REDIS_URL")
        settings = {
            "APP_ENV": "test",
            **database_env(await new_database_url()),
            "JWT_SECRET_KEY": "browser-test-secret-" + uuid.uuid4().hex,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "ENABLE_METRICS": "false",
            "ENABLE_RATE_LIMITING": "false",
            "EMAIL_BACKEND": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(inbox.port),
            "SMTP_STARTTLS": "false",
            "SMTP_FROM": "taskapi <no-reply@taskapi.test>",
            **({"REDIS_URL": redis_url} if redis_url else {}),
            "REDIS_KEY_PREFIX": f"taskapi-browser-{uuid.uuid4().hex[:10]}:",
            **env,
        }
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "taskapi",
                "serve",
                cwd=workdir,
                env={**base, **settings},
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        server = LiveServer(base_url=f"http://localhost:{port}", process=process, log=log)
        started.append(server)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    raise RuntimeError(f"taskapi serve exited: {log.read_text(errors='replace')}")
                try:
                    live = await http.get(f"http://127.0.0.1:{port}/health/live", timeout=1)
                    if live.status_code == 200:
                        return server
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"taskapi serve on port {port} did not answer in time")

    yield start
    for server in started:
        await server.stop()


@pytest.fixture(scope="module")
async def server(start_server: ServerFactory) -> LiveServer:
    return await start_server()


# --- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class Watched:
    """A page whose script errors and CSP violations fail the test."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") and not EXPECTED_CONSOLE.search(message.text):
            self.problems.append(f"console {message.type}: {message.text}")


@dataclass
class Browsing:
    browser: Browser
    base_url: str
    contexts: list[BrowserContext] = field(default_factory=list)
    watched: list[Watched] = field(default_factory=list)

    async def new_context(
        self, *, color_scheme: Literal["light", "dark"] = "light"
    ) -> BrowserContext:
        context = await self.browser.new_context(
            viewport=DESKTOP,
            base_url=self.base_url,
            color_scheme=color_scheme,
            timezone_id=BROWSER_ZONE.key,
            locale="en-GB",
        )
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context

    async def new_page(self, context: BrowserContext | None = None) -> Page:
        page = await (context or await self.new_context()).new_page()
        watched = Watched(page)
        page.on("console", watched.on_console)
        page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
        self.watched.append(watched)
        return page


@pytest.fixture
async def browsing(browser: Browser, server: LiveServer) -> AsyncIterator[Browsing]:
    session = Browsing(browser=browser, base_url=server.base_url)
    yield session
    for context in session.contexts:
        await context.close()
    problems = [problem for watched in session.watched for problem in watched.problems]
    assert not problems, "\n".join(problems)


# --- what every screen is checked for -------------------------------------------------------

_axe = Axe()


async def assert_accessible(page: Page, screen: str) -> None:
    """axe-core: no serious or critical violation."""
    results = await _axe.run(page)
    serious = [
        f"{violation['id']} ({violation['impact']}): "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert not serious, f"{screen}: " + "; ".join(serious)


async def dismiss_toasts(page: Page) -> None:
    """Close the passing messages, so they cover nothing in a screenshot (not under a modal
    dialog, which keeps them inert)."""
    if await page.locator("dialog[open]").count():
        return
    dismiss = page.get_by_role("button", name="Dismiss message")
    for _ in range(10):
        if not await dismiss.count():
            return
        # A message may leave on its own between the count and the click.
        with contextlib.suppress(PlaywrightTimeoutError):
            await dismiss.first.click(timeout=2_000)


async def check_screen(page: Page, name: str, *, dark: bool = False) -> None:
    """axe at desktop and phone width, and a full-page screenshot of each under
    artifacts/screenshots/ (kept by CI)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await dismiss_toasts(page)
    for viewport in (DESKTOP, PHONE):
        await page.set_viewport_size(viewport)
        await page.wait_for_timeout(100)
        await assert_accessible(page, f"{name} at {viewport['width']} px")
        suffix = "-dark" if dark else ""
        await page.screenshot(
            path=SCREENSHOTS / f"{name}{suffix}-{viewport['width']}.png", full_page=True
        )
    await page.set_viewport_size(DESKTOP)


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


Json = dict[str, Any]
