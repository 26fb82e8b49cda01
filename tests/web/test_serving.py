"""The web app as the server serves it (DESIGN §7.1): the shell for every page path, the
static files with their types and caching, a strict CSP, and the paths it must leave alone."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from taskapi.web import CONTENT_SECURITY_POLICY, WEB_ROOT
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.problems import assert_problem

STATIC = WEB_ROOT / "static"
STATIC_FILES = sorted(path for path in STATIC.rglob("*") if path.is_file())
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def assert_strict_csp(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(item.strip().split(" ", 1) for item in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def assert_shell(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert_strict_csp(response)
    assert '<script type="module" src="/static/js/main.js"></script>' in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/signin",
        "/verify-email?token=" + "a" * 64,
        "/reset-password?token=" + "b" * 64,
        "/tasks",
        "/tasks/01937a4e-9d3c-7f52-8b68-4d2e3c5f6a71",
        "/no/such/page",
        "/apiary",
        "/docsy",
    ],
)
async def test_page_paths_answer_the_app_shell(client: httpx.AsyncClient, path: str) -> None:
    assert_shell(await client.get(path))


async def test_head_of_the_shell_has_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/tasks")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/api",
        "/api/v1",
        "/api/v1/nope",
        "/api/v2/tasks",
        "/static/nope.js",
        "/static/",
        "/health/nope",
        "/docs/nope",
        "/metrics/nope",
    ],
)
async def test_reserved_paths_never_answer_the_shell(client: httpx.AsyncClient, path: str) -> None:
    assert_problem(await client.get(path), 404, "not_found")


async def test_an_unknown_api_path_is_404_for_every_method(client: httpx.AsyncClient) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert_problem(await client.request(method, "/api/v1/nope"), 404, "not_found")


async def test_other_methods_on_a_page_path_are_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/tasks/new")

    body = assert_problem(response, 405, "method_not_allowed")
    assert body["status"] == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", STATIC_FILES, ids=lambda path: str(path.relative_to(STATIC)))
async def test_static_files_have_their_type_and_revalidate(
    client: httpx.AsyncClient, path: Path
) -> None:
    url = f"/static/{path.relative_to(STATIC).as_posix()}"
    content = path.read_bytes()  # noqa: ASYNC240 (a small file of the package)

    response = await client.get(url)

    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == CONTENT_TYPES[path.suffix]
    assert response.headers["cache-control"] == "no-cache"
    assert_strict_csp(response)
    again = await client.get(url, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


async def test_docs_keep_working_without_the_strict_policy(client: httpx.AsyncClient) -> None:
    """Swagger UI and ReDoc load their scripts from a CDN: the app's CSP would break them."""
    for path in ("/docs", "/redoc"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
        assert "content-security-policy" not in response.headers
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "taskapi"


async def test_api_answers_carry_no_page_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")

    assert response.status_code == 200
    assert "content-security-policy" not in response.headers


async def test_web_app_disabled_serves_only_the_api(
    app_factory: AppFactory, make_settings: SettingsFactory
) -> None:
    app: FastAPI = await app_factory(make_settings(web_app_enabled=False))
    async with make_client(app) as client:
        for path in ("/", "/tasks", "/static/app.css", "/static/js/main.js"):
            assert_problem(await client.get(path), 404, "not_found")
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/docs")).status_code == 200


# --- the files themselves -------------------------------------------------------------------

INLINE_STYLE = re.compile(r"""style\s*=|setAttribute\(\s*["']style|\.style\b|<style""", re.I)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
EVAL = re.compile(r"\beval\(|new Function\(|innerHTML|outerHTML|insertAdjacentHTML|document\.write")


def test_the_shell_has_no_inline_script_or_style() -> None:
    html = (WEB_ROOT / "index.html").read_text(encoding="utf-8")

    assert not INLINE_SCRIPT.search(html)
    assert not INLINE_STYLE.search(html)
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"https?://", html), "everything comes from this origin"


@pytest.mark.parametrize(
    "path", sorted(STATIC.rglob("*.js")), ids=lambda path: str(path.relative_to(STATIC))
)
def test_scripts_build_no_markup_from_strings(path: Path) -> None:
    """Text goes in as text: nothing a user typed can become markup or a style."""
    source = path.read_text(encoding="utf-8")

    assert not EVAL.search(source)
    assert not INLINE_STYLE.search(source)
    assert not re.search(r"""(import|fetch)\(?\s*["']https?://""", source)


@pytest.mark.parametrize(
    "path", sorted(STATIC.rglob("*.js")), ids=lambda path: str(path.relative_to(STATIC))
)
def test_every_module_import_resolves(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    targets = re.findall(
        r"""^\s*(?:import|export)\b[^;]*?from\s+["'](.+?)["']""", source, re.M | re.S
    )

    assert targets or path.name in {"dom.js", "format.js"}
    for target in targets:
        assert target.startswith("./") or target.startswith("../"), target
        assert (path.parent / target).resolve().is_file(), f"{path.name} imports {target}"
