"""Each screen's error states in a real browser: field errors next to their fields, the
locked account's end, bad links, the unverified account, a session ended elsewhere, 429
and 503 banners, pages that do not exist, and keyboard use."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from playwright._impl._api_structures import SetCookieParam  # not re-exported by the API
from playwright.async_api import Cookie, Page, Route, expect

from taskapi.auth.cookies import REFRESH_COOKIE
from tests.web.conftest import (
    BROWSER_TESTS,
    BROWSER_ZONE,
    PASSWORD,
    Browsing,
    Inbox,
    LiveServer,
    ServerFactory,
    check_screen,
    new_email,
)

pytestmark = BROWSER_TESTS

API = "/api/v1"
NEW_PASSWORD = "N3w!Passw0rd"


async def verified_account(server: LiveServer, inbox: Inbox) -> str:
    """An account made and verified through the JSON API and the real inbox."""
    email = new_email()
    before = len(inbox.messages)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        registered = await http.post(
            f"{API}/auth/register",
            json={"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"},
        )
        assert registered.status_code == 201, registered.text
        link = await inbox.link(email, "verify-email", after=before)
        token = link.rsplit("token=", 1)[1]
        verified = await http.post(f"{API}/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
    return email


async def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/signin")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()


async def expect_field_error(page: Page, label: str, message: str | re.Pattern[str]) -> None:
    """The message sits next to the field, which is marked invalid and names it."""
    control = page.get_by_label(label, exact=True)
    await expect(control).to_have_attribute("aria-invalid", "true")
    described = await control.get_attribute("aria-describedby")
    assert described is not None
    error = page.locator(f"#{described.split()[-1]}")
    await expect(error).to_be_visible()
    await expect(error).to_have_text(message)


@contextlib.asynccontextmanager
async def api_client(server: LiveServer, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """The JSON API as `email` (signed in with a token of its own), to check what is stored."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        signed_in = await http.post(
            f"{API}/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        http.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"
        yield http


def local_day(days: int, clock: str) -> datetime:
    """`days` from today at `clock` (HH:MM) in the browser's zone, Europe/Berlin."""
    hour, minute = map(int, clock.split(":"))
    day = datetime.now(BROWSER_ZONE) + timedelta(days=days)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


def parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- sign up, sign in -----------------------------------------------------------------------


async def test_sign_up_shows_each_problem_at_its_field(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    taken = await verified_account(server, inbox)
    page = await browsing.new_page()
    await page.goto("/signup")
    await page.get_by_label("Full name").fill("Ada Lovelace")
    await page.get_by_label("Email").fill(new_email())
    await page.get_by_label("Password", exact=True).fill("weakpassword")
    await page.get_by_label("Repeat the password").fill("weakpassword")
    await page.get_by_role("button", name="Create account").click()
    await expect_field_error(
        page, "Password", re.compile("must contain an uppercase letter, a digit")
    )
    await expect(page.get_by_label("Password", exact=True)).to_be_focused()
    await check_screen(page, "signup-errors")

    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect_field_error(page, "Repeat the password", "The two passwords differ.")

    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_label("Email").fill(taken)
    await page.get_by_role("button", name="Create account").click()
    await expect_field_error(page, "Email", re.compile("already exists"))
    await expect(page).to_have_url(re.compile(r"/signup$"))


async def test_sign_in_says_wrong_and_then_until_when_the_account_is_locked(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    email = await verified_account(server, inbox)
    page = await browsing.new_page()
    await page.goto("/signin")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("Wr0ng!Password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Email or password is wrong.")

    for _ in range(4):
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("this account is locked until")
    # The browser shows it in its own zone (Europe/Berlin) and to the minute.
    until = datetime.now(BROWSER_ZONE) + timedelta(minutes=15)
    minutes = "|".join(f"{until + timedelta(minutes=step):%H:%M}" for step in (-1, 0, 1))
    await expect(alert).to_contain_text(re.compile(f"locked until .*({minutes})"))
    await expect(alert).to_contain_text("in 15 minutes")
    await expect(alert.get_by_role("link", name="Reset your password")).to_be_visible()
    await check_screen(page, "signin-locked")
    # Even the right password waits for the lock to end.
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(alert).to_contain_text("locked until")


async def test_keyboard_alone_signs_in(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    email = await verified_account(server, inbox)
    page = await browsing.new_page()
    await page.goto("/signin")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_visible()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Email")).to_be_focused()
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Tasks")).to_be_focused()


# --- links from emails ----------------------------------------------------------------------


async def test_a_bad_verification_link_offers_a_new_one(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    await page.goto(f"/verify-email?token={secrets.token_hex(32)}")

    await expect(page.get_by_text("invalid, expired or already used")).to_be_visible()
    await expect(page).not_to_have_url(re.compile("token"))
    await check_screen(page, "verify-email-invalid")
    email = new_email()
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Send a new link").click()
    await expect(
        page.get_by_role("status").filter(has_text="a new link is on its way")
    ).to_be_visible()


async def test_a_verification_link_opened_elsewhere_asks_to_sign_in(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    """Signed up on one device, link opened on another: verified, then sign in there."""
    email = new_email()
    before = len(inbox.messages)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        registered = await http.post(
            f"{API}/auth/register",
            json={"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"},
        )
        assert registered.status_code == 201
    link = await inbox.link(email, "verify-email", after=before)
    page = await browsing.new_page()

    await page.goto(link)

    await expect(page.get_by_text(f"Your email {email} is verified.")).to_be_visible()
    await check_screen(page, "verify-email-signin")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    await expect(page.get_by_text("No tasks yet")).to_be_visible()


async def test_forgot_and_reset_password(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    email = await verified_account(server, inbox)
    page = await browsing.new_page()
    await page.goto("/signin")
    await page.get_by_role("link", name="Forgot your password?").click()
    before = len(inbox.messages)
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Email me a reset link").click()
    await expect(page.get_by_text(f"If an account uses {email}")).to_be_visible()
    await check_screen(page, "forgot-password")

    link = await inbox.link(email, "reset-password", after=before)
    await page.goto(link)
    await expect(page).not_to_have_url(re.compile("token"))
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill("Something!Else1")
    await page.get_by_role("button", name="Set the new password").click()
    await expect_field_error(page, "Repeat the new password", "The two passwords differ.")
    await page.get_by_label("New password", exact=True).fill("short")
    await page.get_by_label("Repeat the new password").fill("short")
    await page.get_by_role("button", name="Set the new password").click()
    await expect_field_error(page, "New password", re.compile("at least 8 characters"))
    await check_screen(page, "reset-password-errors")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.get_by_text("Your password is changed")).to_be_visible()
    await sign_in(page, email, NEW_PASSWORD)

    # The same link again: used.
    other = await browsing.new_page()
    await other.goto(link)
    await other.get_by_label("New password", exact=True).fill(PASSWORD)
    await other.get_by_label("Repeat the new password").fill(PASSWORD)
    await other.get_by_role("button", name="Set the new password").click()
    alert = other.get_by_role("alert")
    await expect(alert).to_contain_text("invalid, expired or already used")
    await expect(alert.get_by_role("link", name="Ask for a new one")).to_be_visible()


async def test_an_unverified_account_is_asked_to_verify_and_can_resend(
    browsing: Browsing, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    email = new_email()
    await page.goto("/signup")
    await page.get_by_label("Full name").fill("Ada Lovelace")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Verify your email first")).to_be_visible()
    before = len(inbox.messages)

    await page.get_by_role("button", name="Resend the link").click()

    await expect(page.get_by_text(f"A new link is on its way to {email}.")).to_be_visible()
    await inbox.link(email, "verify-email", after=before)
    # Every task and category screen answers the same way until then.
    for screen in ("Categories", "Dashboard", "Trash"):
        await page.get_by_role("link", name=screen, exact=True).click()
        await expect(page).to_have_url(re.compile(f"/{screen.lower()}$"))
        await expect(page.get_by_role("heading", name="Verify your email first")).to_be_visible()


# --- the signed-in screens ------------------------------------------------------------------


async def test_task_form_shows_field_errors(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    email = await verified_account(server, inbox)
    await sign_in(page, email)
    await page.get_by_role("link", name="New task").click()
    await page.get_by_label("Title").fill("ab")
    yesterday = (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%dT10:00")
    await page.get_by_label("Due date").fill(yesterday)
    await page.get_by_label("Remind me at").fill(yesterday)
    await page.get_by_role("button", name="Create task").click()

    await expect_field_error(page, "Title", re.compile("at least 3 characters"))
    await expect_field_error(page, "Due date", re.compile("must not be in the past"))
    await expect_field_error(page, "Remind me at", re.compile("must not be in the past"))
    await expect(page.get_by_label("Title")).to_be_focused()
    await check_screen(page, "task-new-errors")

    # A repeating task needs a due date to count from (the server says so after the rest).
    await page.get_by_label("Title").fill("Water the plants")
    await page.get_by_label("Due date").fill("")
    await page.get_by_label("Remind me at").fill("")
    await page.get_by_label("Repeat").select_option("DAILY")
    await page.get_by_role("button", name="Create task").click()
    await expect_field_error(page, "Repeat", "A recurring task needs a “Due date”")
    await expect(page.get_by_label("Title")).not_to_have_attribute("aria-invalid", "true")
    async with api_client(server, email) as http:
        assert (await http.get(f"{API}/tasks")).json()["total"] == 0


async def test_a_repeating_task_with_a_reminder(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    """Reminder and recurrence from the form to the stored task and back into the form;
    completing it from the list brings the next one, a week on."""
    page = await browsing.new_page()
    email = await verified_account(server, inbox)
    await sign_in(page, email)
    due = local_day(2, "09:30")
    remind = local_day(1, "18:00")
    await page.get_by_role("link", name="New task").click()
    await page.get_by_label("Title").fill("Water the plants")
    await page.get_by_label("Due date").fill(due.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_label("Remind me at").fill(remind.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_label("Repeat").select_option("WEEKLY")
    await page.get_by_label("Ends").select_option("count")
    await page.get_by_label("Times").fill("3")
    await check_screen(page, "task-new-repeating")
    await page.get_by_role("button", name="Create task").click()

    item = page.locator(".task").filter(has_text="Water the plants")
    await expect(item).to_contain_text("Every week, 3 times")
    await expect(item).to_contain_text("Reminder")
    async with api_client(server, email) as http:
        [first] = (await http.get(f"{API}/tasks")).json()["items"]
    assert first["recurrence"] == "FREQ=WEEKLY;COUNT=3"
    assert parse_instant(first["due_date"]) == due
    assert parse_instant(first["remind_at"]) == remind

    # Completing it creates the next one: due a week later, the reminder moved as much.
    await page.get_by_label("Completed: Water the plants").check()
    await expect(item).to_have_count(2)
    following = page.locator(".task.status-pending").filter(has_text="Water the plants")
    await expect(following).to_contain_text("Every week, 2 times")
    async with api_client(server, email) as http:
        completed = (await http.get(f"{API}/tasks/{first['id']}")).json()
        assert completed["status"] == "completed"
        assert completed["next_occurrence_id"] is not None
        second = (await http.get(f"{API}/tasks/{completed['next_occurrence_id']}")).json()
    assert second["recurrence"] == "FREQ=WEEKLY;COUNT=2"
    assert parse_instant(second["due_date"]) == due + timedelta(days=7)
    assert parse_instant(second["remind_at"]) == remind + timedelta(days=7)

    # The completed task links to the next one, whose form shows the rule it has.
    done = page.locator(".task.status-completed")
    await done.get_by_role("link", name="Water the plants", exact=True).click()
    await expect(page.get_by_role("heading", name="Edit task")).to_be_visible()
    await page.get_by_role("link", name="Open the next occurrence").click()
    await expect(page).to_have_url(re.compile(f"/tasks/{second['id']}$"))
    await expect(page.get_by_label("Repeat")).to_have_value("WEEKLY")
    await expect(page.get_by_label("Ends")).to_have_value("count")
    await expect(page.get_by_label("Times")).to_have_value("2")
    await expect(page.get_by_label("Remind me at")).to_have_value(
        (remind + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    )
    await check_screen(page, "task-edit-repeating")

    # Every two weeks on Monday and Wednesday; then a title change leaves the rule alone.
    await page.get_by_label("Every").fill("2")
    await page.get_by_label("Mon", exact=True).check()
    await page.get_by_label("Wed", exact=True).check()
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    await expect(following).to_contain_text("Every 2 weeks on Mon, Wed, 2 times")
    async with api_client(server, email) as http:
        changed = (await http.get(f"{API}/tasks/{second['id']}")).json()
    assert changed["recurrence"] == "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=2"
    assert changed["version"] == second["version"] + 1

    # No reminder, no repeat: both cleared.
    await following.get_by_role("link", name="Water the plants", exact=True).click()
    await page.get_by_label("Remind me at").fill("")
    await page.get_by_label("Repeat").select_option("")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    await expect(following).not_to_contain_text("Every")
    await expect(following).not_to_contain_text("Reminder")
    async with api_client(server, email) as http:
        cleared = (await http.get(f"{API}/tasks/{second['id']}")).json()
    assert cleared["recurrence"] is None
    assert cleared["remind_at"] is None
    assert cleared["version"] == changed["version"] + 1


async def test_the_trash_restores_and_catches_up_with_other_pages(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    email = await verified_account(server, inbox)
    await sign_in(page, email)
    async with api_client(server, email) as http:
        ids = {}
        for title in ("Old shopping list", "Draft of the letter"):
            created = await http.post(f"{API}/tasks", json={"title": title})
            assert created.status_code == 201, created.text
            ids[title] = created.json()["id"]
            assert (await http.delete(f"{API}/tasks/{ids[title]}")).status_code == 204
    await page.get_by_role("link", name="Trash").click()
    trashed = page.get_by_role("list", name="Deleted tasks")
    await expect(trashed.get_by_role("listitem")).to_have_count(2)
    await expect(page.get_by_text("2 deleted tasks.")).to_be_visible()

    # Restored here: back in the list of tasks, with its version one up.
    await trashed.get_by_role("button", name="Restore “Draft of the letter”").click()
    await expect(page.get_by_text("Restored “Draft of the letter”.").first).to_be_visible()
    await expect(trashed.get_by_role("listitem")).to_have_count(1)
    # Restored elsewhere meanwhile: the page says so and catches up.
    async with api_client(server, email) as http:
        restored = await http.post(f"{API}/tasks/{ids['Old shopping list']}/restore")
        assert restored.status_code == 200, restored.text
        assert restored.json()["version"] == 2
        draft = (await http.get(f"{API}/tasks/{ids['Draft of the letter']}")).json()
        assert draft["version"] == 2
        assert draft["deleted_at"] is None
    await trashed.get_by_role("button", name="Restore “Old shopping list”").click()
    await expect(page.get_by_text("“Old shopping list” is no longer in the trash.")).to_be_visible()
    await expect(page.get_by_text("The trash is empty.")).to_be_visible()
    await expect(trashed.get_by_role("listitem")).to_have_count(0)
    await check_screen(page, "trash-empty")
    await page.get_by_role("link", name="Tasks", exact=True).click()
    await expect(page.locator(".task-title")).to_have_text(
        ["Draft of the letter", "Old shopping list"], use_inner_text=True
    )


async def test_personal_access_tokens(browsing: Browsing, server: LiveServer, inbox: Inbox) -> None:
    """Made on the account screen, shown once, working within its scopes, then revoked."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        if "/api/v1/auth/tokens" not in (await http.get("/openapi.json")).json()["paths"]:
            pytest.skip("this server has no personal access tokens (/auth/tokens)")
    page = await browsing.new_page()
    email = await verified_account(server, inbox)
    await sign_in(page, email)
    await page.get_by_role("link", name="Account").click()
    form = page.get_by_role("form", name="New personal access token")

    # Nothing named, no scope: both said at their place, nothing made.
    for scope in ("tasks:read", "categories:read"):
        await form.get_by_label(scope).uncheck()
    await expect(form.get_by_role("checkbox", checked=True)).to_have_count(0)
    await form.get_by_role("button", name="Create token").click()
    await expect(form.get_by_label("Token name")).to_have_attribute("aria-invalid", "true")
    await expect(form.locator("[data-field=scopes] .field-error")).to_be_visible()
    await check_screen(page, "account-token-errors")

    await form.get_by_label("Token name").fill("CI script")
    await form.get_by_label("tasks:read").check()
    await form.get_by_label("Expires").select_option("30")
    await form.get_by_role("button", name="Create token").click()
    shown = page.get_by_label("Token “CI script”")
    await expect(shown).to_have_value(re.compile(r"^tapi_[A-Za-z0-9_-]{40,}$"))
    token = await shown.input_value()
    tokens = page.get_by_role("list", name="Personal access tokens")
    await expect(tokens.get_by_role("listitem")).to_have_count(1)
    await expect(tokens.get_by_role("listitem")).to_contain_text("CI script")
    await expect(tokens.get_by_role("listitem")).to_contain_text("tasks:read")
    await expect(tokens.get_by_role("listitem")).to_contain_text("never used")
    await check_screen(page, "account-token-new")
    # The form is ready for the next one, with its defaults.
    await expect(form.get_by_label("Token name")).to_have_value("")
    await expect(form.get_by_role("checkbox", checked=True)).to_have_count(2)
    await expect(form.get_by_label("Expires")).to_have_value("90")

    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        assert (await http.get(f"{API}/tasks")).status_code == 200
        refused = await http.post(f"{API}/tasks", json={"title": "Not allowed"})
        assert refused.status_code == 403
        assert refused.json()["code"] == "insufficient_scope"
    # Shown once: after a reload only its name is left.
    await page.reload()
    await expect(page.get_by_label("Token “CI script”")).to_have_count(0)
    await expect(tokens.get_by_role("listitem")).not_to_contain_text("never used")

    await tokens.get_by_role("button", name="Revoke CI script").click()
    dialog = page.get_by_role("dialog", name="Revoke “CI script”?")
    await dialog.get_by_role("button", name="Revoke token").click()
    await expect(tokens.get_by_role("listitem")).to_have_count(0)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        assert (await http.get(f"{API}/tasks")).status_code == 401


async def test_a_new_dashboard_and_a_time_zone_the_server_does_not_know(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    """All zeros for a new account; and when the server's tz database lacks the browser's
    zone (400 naming tz), the days are counted in UTC and the screen says so."""
    page = await browsing.new_page()
    await sign_in(page, await verified_account(server, inbox))
    sent: list[str] = []

    async def unknown_zone(route: Route) -> None:
        sent.append(route.request.url)
        await route.continue_(
            url=route.request.url.replace("tz=Europe%2FBerlin", "tz=Mars%2FOlympus_Mons")
        )

    await page.route(re.compile(r"/api/v1/tasks/stats\?tz=Europe%2FBerlin$"), unknown_zone)
    await page.get_by_role("link", name="Dashboard").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(page.get_by_text("Days in UTC")).to_be_visible()
    assert len(sent) == 1
    cards = page.get_by_role("list", name="Summary")
    for label in (
        "Open tasks",
        "Overdue",
        "Due today",
        "Due in the next 7 days",
        "Completed in 30 days",
    ):
        card = cards.get_by_role("listitem").filter(has_text=label)
        await expect(card.locator(".card-value")).to_have_text("0")
    await expect(page.get_by_role("img", name=re.compile("^Tasks by status"))).to_be_visible()
    await check_screen(page, "dashboard-empty")


async def test_a_backwards_due_range_is_explained_at_its_field(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    await sign_in(page, await verified_account(server, inbox))
    filters = page.get_by_role("search")
    await filters.get_by_label("Due from").fill("2031-05-01")
    await filters.get_by_label("Due until").fill("2031-01-01")

    await expect_field_error(page, "Due until", "Must not be before “Due from”")
    await check_screen(page, "tasks-filter-error")


async def test_categories_show_name_problems(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    await sign_in(page, await verified_account(server, inbox))
    await page.get_by_role("link", name="Categories").click()
    form = page.get_by_role("form", name="New category")
    await form.get_by_label("Name").fill("Work")
    await form.get_by_role("button", name="Add category").click()
    await expect(page.get_by_role("link", name="Work", exact=True)).to_be_visible()

    await form.get_by_label("Name").fill("Work")
    await form.get_by_role("button", name="Add category").click()
    await expect_field_error(page, "Name", "You already have a category with this name.")
    await form.get_by_label("Name").fill("ab")
    await form.get_by_role("button", name="Add category").click()
    await expect_field_error(page, "Name", re.compile("at least 3 characters"))
    await check_screen(page, "categories-errors")


async def test_account_refuses_a_wrong_current_password(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    await sign_in(page, await verified_account(server, inbox))
    await page.get_by_role("link", name="Account").click()
    await page.get_by_label("Current password").fill("Wr0ng!Password")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()

    await expect_field_error(page, "Current password", "This is not your current password.")
    await check_screen(page, "account-errors")

    await page.get_by_role("button", name="Delete my account").click()
    dialog = page.get_by_role("dialog", name="Delete your account?")
    confirm = dialog.get_by_role("button", name="Delete account")
    await expect(confirm).to_be_disabled()
    await check_screen(page, "account-delete")
    await dialog.get_by_label("Type DELETE to confirm").fill("DELETE")
    await confirm.click()
    await expect(page.get_by_text("is deleted")).to_be_visible()


async def test_a_session_ended_elsewhere_returns_to_sign_in(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    email = await verified_account(server, inbox)
    page = await browsing.new_page()
    await sign_in(page, email)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        login = await http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
        ended = await http.post(
            f"{API}/auth/logout-all",
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
        assert ended.status_code == 204

    await page.get_by_role("link", name="Categories").click()

    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_text("Your session has ended. Please sign in again.")).to_be_visible()
    # Signing in again goes back where the user was going.
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Categories", exact=True)).to_be_visible()


async def test_signing_out_in_one_tab_signs_out_the_others(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    email = await verified_account(server, inbox)
    context = await browsing.new_context()
    first = await browsing.new_page(context)
    await sign_in(first, email)
    second = await browsing.new_page(context)
    await second.goto("/categories")
    await expect(second.get_by_role("heading", name="Categories", exact=True)).to_be_visible()

    await first.get_by_role("button", name="Sign out").click()

    await expect(second.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(second.get_by_text("You were signed out in another tab.")).to_be_visible()
    await second.reload()
    await expect(second.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_pages_that_do_not_exist(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    await sign_in(page, await verified_account(server, inbox))
    await page.goto("/tasks/01937a4e-9d3c-7f52-8b68-4d2e3c5f6a71")
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    await page.goto("/no/such/page")
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    await check_screen(page, "not-found")
    await page.get_by_role("link", name="Go to your tasks").click()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()


# --- the server refusing: 429 and 503 -------------------------------------------------------


async def test_too_many_requests_says_how_long_to_wait(
    browsing: Browsing, start_server: ServerFactory, inbox: Inbox
) -> None:
    limited = await start_server(ENABLE_RATE_LIMITING="true", RATE_LIMIT_ANONYMOUS_PER_MINUTE="3")
    email = await verified_account(limited, inbox)
    context = await browsing.new_context()
    page = await browsing.new_page(context)
    # This test's pages talk to the limited server.
    await page.goto(f"{limited.base_url}/signin")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("Wr0ng!Password")
    for _ in range(3):
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()

    banner = page.locator("#banner")
    await expect(banner).to_contain_text("Slow down: too many requests. You can retry in")
    await expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"Slow down: too many requests\. Try again in \d+ s\.")
    )
    seconds = int(await banner.locator(".banner-count").inner_text())
    assert 1 <= seconds <= 60
    await check_screen(page, "rate-limited")


async def test_an_unavailable_service_shows_a_banner_and_retries(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    """503 is what the API answers while its database is down. Stopping the database under
    a shared test server would break the other tests, so the browser is made to see that
    answer for two requests instead; everything after them is the real server."""
    page = await browsing.new_page()
    await sign_in(page, await verified_account(server, inbox))
    refused: list[str] = []

    async def unavailable(route: Route) -> None:
        if len(refused) < 2:
            refused.append(route.request.url)
            await route.fulfill(
                status=503,
                headers={"Retry-After": "2", "Content-Type": "application/problem+json"},
                body='{"type":"about:blank","title":"Service Unavailable","status":503,'
                '"detail":"The database is unavailable.","code":"service_unavailable"}',
            )
        else:
            await route.continue_()

    await page.route(re.compile(r"/api/v1/categories$"), unavailable)
    await page.get_by_role("link", name="Categories").click()

    banner = page.locator("#banner")
    await expect(banner).to_contain_text("The service is unavailable right now. Retrying in")
    await expect(banner.get_by_role("button", name="Retry now")).to_be_visible()
    await check_screen(page, "service-unavailable")
    await expect(page.get_by_role("heading", name="Categories", exact=True)).to_be_visible(
        timeout=15_000
    )
    await expect(banner).to_be_hidden()
    assert len(refused) == 2


async def test_account_name_and_sign_out_everywhere(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    email = await verified_account(server, inbox)
    elsewhere = await browsing.new_page()
    await sign_in(elsewhere, email)
    page = await browsing.new_page()
    await sign_in(page, email)
    await page.get_by_role("link", name="Account").click()

    await page.get_by_label("Full name").fill("  Augusta Ada King  ")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.get_by_text("Your name is saved.")).to_be_visible()
    await expect(page.locator(".who-name")).to_have_text("Augusta Ada King")

    await page.get_by_role("button", name="Sign out everywhere").click()
    await page.get_by_role("dialog").get_by_role("button", name="Sign out everywhere").click()
    await expect(page.get_by_text("You are signed out on every device.")).to_be_visible()
    # The other browser's session ended too: its next request leads to sign in.
    await elsewhere.get_by_role("link", name="Categories").click()
    await expect(elsewhere.get_by_text("Your session has ended")).to_be_visible()


async def test_deleting_a_category_keeps_its_tasks(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    page = await browsing.new_page()
    await sign_in(page, await verified_account(server, inbox))
    await page.get_by_role("link", name="Categories").click()
    form = page.get_by_role("form", name="New category")
    await form.get_by_label("Name").fill("Errands")
    await form.get_by_role("button", name="Add category").click()
    await page.get_by_role("link", name="Tasks", exact=True).click()
    await page.get_by_role("link", name="New task").click()
    await page.get_by_label("Title").fill("Post the letters")
    await page.get_by_label("Errands", exact=True).check()
    await page.get_by_role("button", name="Create task").click()
    await expect(page.locator(".task").filter(has_text="Post the letters")).to_contain_text(
        "Errands"
    )

    await page.get_by_role("link", name="Categories").click()
    await page.get_by_role("button", name="Delete Errands").click()
    dialog = page.get_by_role("dialog", name="Delete “Errands”?")
    await expect(dialog).to_contain_text("Its tasks stay")
    await dialog.get_by_role("button", name="Delete category").click()
    await expect(page.get_by_text("No categories yet")).to_be_visible()

    await page.get_by_role("link", name="Tasks", exact=True).click()
    task = page.locator(".task").filter(has_text="Post the letters")
    await expect(task).to_be_visible()
    await expect(task).not_to_contain_text("Errands")


def as_set_cookie(cookie: Cookie) -> SetCookieParam:
    return SetCookieParam(
        name=cookie["name"],
        value=cookie["value"],
        domain=cookie["domain"],
        path=cookie["path"],
        httpOnly=cookie["httpOnly"],
        secure=cookie["secure"],
        sameSite=cookie["sameSite"],
    )


async def test_a_reused_refresh_token_signs_out_cleanly(
    browsing: Browsing, server: LiveServer, inbox: Inbox
) -> None:
    """A stale copy of the cookie (as a tab that lost a refresh race would present) ends
    the whole session: the page lands on sign in, without errors, and stays signed out."""
    context = await browsing.new_context()
    page = await browsing.new_page(context)
    await sign_in(page, await verified_account(server, inbox))
    [stale] = [cookie for cookie in await context.cookies() if cookie["name"] == REFRESH_COOKIE]
    await page.reload()  # the reload refreshes: the cookie is rotated
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    [current] = [cookie for cookie in await context.cookies() if cookie["name"] == REFRESH_COOKIE]
    assert current["value"] != stale["value"]

    await context.add_cookies([as_set_cookie(stale)])
    await page.reload()

    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert [cookie for cookie in await context.cookies() if cookie["name"] == REFRESH_COOKIE] == []
    await context.add_cookies([as_set_cookie(current)])  # the successor died with the session
    await page.goto("/tasks")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
