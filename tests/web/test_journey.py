"""One person's whole way through the web app, in a real browser against a real server and
a real SMTP inbox: sign up, the emailed link, categories and tasks, filters, search, sort
and pages, a conflict with a second page, delete and Undo, the trash, a new password,
sessions (when the server has them), sign out."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta

import httpx
from playwright.async_api import Page, expect

from tests.web.conftest import (
    BROWSER_TESTS,
    PASSWORD,
    Browsing,
    Inbox,
    LiveServer,
    check_screen,
    new_email,
)

pytestmark = BROWSER_TESTS

NEW_PASSWORD = "N3w!Passw0rd"
# Title, priority, category, due in days (None: no due date)
TASKS = [
    ("Write the quarterly report", "high", "Work", 2),
    ("Book the dentist", "medium", "Household", 9),
    ("Renew the passport", "high", None, 30),
    ("Fix the leaking tap", "low", "Household", None),
    ("Prepare the team offsite", "medium", "Work", 14),
    ("Pay the electricity bill", "high", "Household", 1),
    ("Read the design review", "low", "Work", None),
]


async def shown_titles(page: Page) -> list[str]:
    await expect(page.locator("[aria-busy=true]")).to_have_count(0)
    return [text.strip() for text in await page.locator(".task-title").all_inner_texts()]


async def offers_sessions(server: LiveServer) -> bool:
    """Whether the server lists /auth/sessions (the account screen shows them only then)."""
    async with httpx.AsyncClient(
        base_url=server.base_url.replace("localhost", "127.0.0.1")
    ) as http:
        document = (await http.get("/openapi.json")).json()
    return "/api/v1/auth/sessions" in document["paths"]


def local_input(days: int) -> str:
    """A datetime-local value `days` from now at 09:30 (the browser runs in Europe/Berlin)."""
    day = datetime.now() + timedelta(days=days)
    return day.strftime("%Y-%m-%dT09:30")


async def test_the_whole_journey(browsing: Browsing, inbox: Inbox, server: LiveServer) -> None:
    sessions_offered = await offers_sessions(server)
    email = new_email()
    context = await browsing.new_context()
    page = await browsing.new_page(context)

    # --- sign up: signed in at once, but the tasks wait for the emailed link ---------------
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/signin"))
    await page.get_by_role("link", name="Create an account").click()
    await expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    await check_screen(page, "signup")
    mail_before = len(inbox.messages)
    await page.get_by_label("Full name").fill("Grace Hopper")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Verify your email first")).to_be_visible()
    await expect(page.locator("main").get_by_text(email, exact=True)).to_be_visible()
    await check_screen(page, "verify-email-first")

    # --- the emailed link verifies and signs in (the refresh cookie of this browser) --------
    link = await inbox.link(email, "verify-email", after=mail_before)
    assert link.startswith(f"{server.base_url}/verify-email?token=")
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/tasks$"))
    await expect(page.get_by_text("No tasks yet")).to_be_visible()
    # A reload keeps the session: the access token is gone, the cookie brings a new one.
    await page.reload()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    # --- categories -------------------------------------------------------------------------
    await page.get_by_role("link", name="Categories").click()
    await expect(page.get_by_role("heading", name="Categories", exact=True)).to_be_visible()
    new_category = page.get_by_role("form", name="New category")
    for name, color in (("Work", "#0ea5e9"), ("Home", "#22c55e")):
        await new_category.get_by_label("Name").fill(name)
        await new_category.get_by_label("Colour").fill(color)
        await new_category.get_by_role("button", name="Add category").click()
        await expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    await page.get_by_role("button", name="Edit Home").click()
    editor = page.get_by_role("form", name="Edit Home")
    await editor.get_by_label("Name").fill("Household")
    await editor.get_by_label("Colour").fill("#f97316")
    await editor.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("link", name="Household", exact=True)).to_be_visible()
    await expect(page.get_by_text("#F97316")).to_be_visible()
    await check_screen(page, "categories")

    # --- tasks ------------------------------------------------------------------------------
    await page.get_by_role("link", name="Tasks", exact=True).click()
    for index, (title, priority, category, due_in) in enumerate(TASKS):
        await page.get_by_role("link", name="New task").click()
        await expect(page.get_by_role("heading", name="New task")).to_be_visible()
        await page.get_by_label("Title").fill(title)
        await page.get_by_label("Description").fill(f"Notes on: {title.lower()}.")
        await page.get_by_label("Priority").select_option(priority)
        if due_in is not None:
            await page.get_by_label("Due date").fill(local_input(due_in))
        if category:
            await page.get_by_label(category, exact=True).check()
        if index == 0:
            await check_screen(page, "task-new")
        await page.get_by_role("button", name="Create task").click()
        await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
        await expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text=showing(1, 7, 7))).to_be_visible()
    # Complete one from the list.
    await page.get_by_label("Completed: Book the dentist").check()
    await expect(page.locator(".status-completed .task-title")).to_have_text("Book the dentist")
    await check_screen(page, "tasks")

    # --- filter, search, sort, page ---------------------------------------------------------
    filters = page.get_by_role("search")
    await filters.get_by_label("Priority").select_option("high")
    await shows(
        page,
        ["Write the quarterly report", "Renew the passport", "Pay the electricity bill"],
        ordered=False,
    )
    await filters.get_by_label("Category").select_option(label="Work")
    await shows(page, ["Write the quarterly report"])
    await filters.get_by_role("button", name="Clear filters").click()
    await shows(page, [title for title, *_ in TASKS][::-1])
    await filters.get_by_label("Status").select_option("completed")
    await shows(page, ["Book the dentist"])
    await filters.get_by_label("Status").select_option("")
    await filters.get_by_label("Due from").fill(_date(0))
    await filters.get_by_label("Due until").fill(_date(10))
    await shows(
        page,
        ["Write the quarterly report", "Book the dentist", "Pay the electricity bill"],
        ordered=False,
    )
    await filters.get_by_role("button", name="Clear filters").click()
    await filters.get_by_label("Search").fill("PASSPORT")
    await shows(page, ["Renew the passport"])
    await filters.get_by_label("Search").fill("notes on: pay")  # in the description
    await shows(page, ["Pay the electricity bill"])
    await filters.get_by_label("Search").fill("")
    await filters.get_by_label("Sort by").select_option("title")
    await filters.get_by_label("Order").select_option("asc")
    await filters.get_by_label("Per page").select_option("5")
    everything = sorted((title for title, *_ in TASKS), key=str.lower)
    await shows(page, everything[:5])
    await expect(page.get_by_text(showing(1, 5, 7))).to_be_visible()
    await page.get_by_role("button", name="Next →").click()
    await shows(page, everything[5:])
    await expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    # The list lives in the URL: a reload shows the same page.
    assert "page=2" in page.url
    assert "sort_by=title" in page.url
    await page.reload()
    await shows(page, everything[5:])
    await filters_reset(page)

    # --- a conflict with a second page ------------------------------------------------------
    await page.get_by_role("link", name="Fix the leaking tap", exact=True).click()
    await expect(page.get_by_role("heading", name="Edit task")).to_be_visible()
    await check_screen(page, "task-edit")
    other = await browsing.new_page(context)
    await other.goto(page.url)
    await expect(other.get_by_role("heading", name="Edit task")).to_be_visible()
    await other.get_by_label("Title").fill("Fix the kitchen tap")
    await other.get_by_role("button", name="Save changes").click()
    await expect(other.get_by_role("heading", name="Tasks")).to_be_visible()
    await page.get_by_label("Priority").select_option("high")
    await page.get_by_label("Description").fill("Washer size 1/2 inch.")
    await page.get_by_role("button", name="Save changes").click()
    conflict = page.get_by_role("region", name="This task was changed somewhere else")
    await expect(conflict).to_be_visible()
    await expect(conflict.get_by_role("row", name=re.compile("Title"))).to_contain_text(
        "Fix the kitchen tap"
    )
    await expect(conflict.get_by_role("row", name=re.compile("Priority"))).to_contain_text("High")
    await check_screen(page, "conflict")
    await conflict.get_by_role("button", name="Keep mine").click()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    kept = page.locator(".task").filter(has_text="Fix the kitchen tap")
    await expect(kept).to_contain_text("High priority")
    await expect(kept).to_contain_text("Washer size 1/2 inch.")
    await other.close()

    # --- delete and Undo, delete again: the task waits in the trash ------------------------
    doomed = page.locator(".task").filter(has_text="Read the design review")
    await doomed.get_by_role("button", name=re.compile("Delete")).click()
    await expect(page.get_by_role("link", name="Read the design review", exact=True)).to_have_count(
        0
    )
    await expect(page.get_by_text(showing(1, 6, 6))).to_be_visible()
    await (
        page.locator(".toast")
        .filter(has_text="Deleted “Read the design review”.")
        .get_by_role("button", name="Undo")
        .click()
    )
    await expect(page.get_by_text("Restored “Read the design review”.")).to_be_visible()
    await expect(
        page.get_by_role("link", name="Read the design review", exact=True)
    ).to_be_visible()
    await expect(page.get_by_text(showing(1, 7, 7))).to_be_visible()
    await doomed.get_by_role("button", name=re.compile("Delete")).click()
    await expect(page.get_by_text(showing(1, 6, 6))).to_be_visible()
    await page.get_by_role("link", name="Trash").click()
    await expect(page.get_by_role("heading", name="Trash")).to_be_visible()
    trashed = page.get_by_role("list", name="Deleted tasks")
    await expect(trashed.get_by_role("listitem")).to_have_count(1)
    await expect(trashed.get_by_role("listitem")).to_contain_text("Read the design review")
    await expect(trashed.get_by_role("listitem")).to_contain_text("Deleted now")
    await check_screen(page, "trash")

    # --- the dashboard ----------------------------------------------------------------------
    await page.get_by_role("link", name="Dashboard").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    cards = page.get_by_role("list", name="Summary")
    await expect(cards.get_by_role("listitem").filter(has_text="Open tasks")).to_contain_text("5")
    await expect(
        cards.get_by_role("listitem").filter(has_text="Completed in 30 days")
    ).to_contain_text("1")
    await expect(page.get_by_role("img", name=re.compile("^Tasks by status"))).to_be_visible()
    await expect(page.get_by_text("Days in Europe/Berlin")).to_be_visible()
    await check_screen(page, "dashboard")
    dark = await browsing.new_context(color_scheme="dark")
    dark_page = await browsing.new_page(dark)
    # A second context has no cookie: sign in there to see the dark theme.
    await dark_page.goto("/signin?next=/dashboard")
    await dark_page.get_by_label("Email").fill(email)
    await dark_page.get_by_label("Password").fill(PASSWORD)
    await dark_page.get_by_role("button", name="Sign in").click()
    await expect(dark_page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await check_screen(dark_page, "dashboard", dark=True)
    await dark_page.get_by_role("link", name="Tasks", exact=True).click()
    await expect(dark_page.get_by_role("heading", name="Tasks")).to_be_visible()
    await check_screen(dark_page, "tasks", dark=True)

    # --- the password, then sessions --------------------------------------------------------
    await page.get_by_role("link", name="Account").click()
    await expect(page.get_by_role("heading", name="Account")).to_be_visible()
    await check_screen(page, "account")
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_text("Password changed.")).to_be_visible()
    # This session goes on (a request after the change still works)...
    await page.get_by_role("link", name="Tasks", exact=True).click()
    await expect(page.get_by_role("link", name="Fix the kitchen tap", exact=True)).to_be_visible()
    # ...while the dark page's session was ended by the change: it is sent to sign in.
    await dark_page.get_by_role("link", name="Categories").click()
    await expect(dark_page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(dark_page.get_by_text("Your session has ended")).to_be_visible()
    if sessions_offered:
        # Signed in again there, the dark page is a second session, which this one ends.
        await dark_page.get_by_label("Email").fill(email)
        await dark_page.get_by_label("Password").fill(NEW_PASSWORD)
        await dark_page.get_by_role("button", name="Sign in").click()
        await expect(dark_page.get_by_role("heading", name="Categories")).to_be_visible()
        await page.get_by_role("link", name="Account").click()
        sessions = page.get_by_role("list", name="Signed-in sessions")
        await expect(sessions.get_by_role("listitem")).to_have_count(2)
        this_device = sessions.get_by_role("listitem").filter(has_text="This device")
        await expect(this_device).to_have_count(1)
        await expect(this_device.get_by_role("button")).to_have_count(0)
        await check_screen(page, "account-sessions")
        await sessions.get_by_role("button", name=re.compile("^Revoke")).click()
        await expect(sessions.get_by_role("listitem")).to_have_count(1)
        await expect(sessions.get_by_role("listitem")).to_contain_text("This device")
        # The ended session's access token is refused at once: its page goes to sign in.
        await dark_page.get_by_role("link", name="Tasks", exact=True).click()
        await expect(dark_page.get_by_role("heading", name="Sign in")).to_be_visible()
        await expect(dark_page.get_by_text("Your session has ended")).to_be_visible()

    # --- sign out ---------------------------------------------------------------------------
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    await check_screen(page, "signin")
    await page.goto("/tasks")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # The new password works, the old one does not.
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("Email or password is wrong.")).to_be_visible()
    await page.get_by_label("Password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/tasks$"))


def showing(first: int, last: int, total: int) -> str:
    return f"Showing {first}\N{EN DASH}{last} of {total} tasks"


async def shows(page: Page, expected: list[str], *, ordered: bool = True) -> None:
    """Wait until the list shows exactly these titles (in this order when `ordered`)."""
    deadline = time.monotonic() + 10
    while True:
        shown = await shown_titles(page)
        if (shown if ordered else sorted(shown)) == (expected if ordered else sorted(expected)):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the list shows {shown}, not {expected}")
        await asyncio.sleep(0.1)


async def filters_reset(page: Page) -> None:
    await page.get_by_role("search").get_by_role("button", name="Clear filters").click()
    await expect(page.locator(".task-title")).to_have_count(len(TASKS))


def _date(days: int) -> str:
    return (datetime.now() + timedelta(days=days)).strftime("%Y-%m-%d")
