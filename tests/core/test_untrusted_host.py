"""The Host header is the client's to choose: no Location is ever built from it.

Created resources answer with a relative Location (RFC 9110 §10.2.2), and a path with a
trailing slash is a 404, not Starlette's redirect to an absolute URL on that host.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.factories import SignedIn

EVIL_HOST = "evil.example"


@pytest.mark.parametrize(
    ("path", "body", "location_prefix"),
    [
        ("/api/v1/tasks", {"title": "Reflected?"}, "/api/v1/tasks/"),
        ("/api/v1/categories", {"name": "Reflected?"}, "/api/v1/categories/"),
    ],
)
async def test_location_of_a_created_resource_is_relative(
    client: httpx.AsyncClient,
    alice: SignedIn,
    path: str,
    body: dict[str, str],
    location_prefix: str,
) -> None:
    response = await client.post(path, json=body, headers={**alice.headers, "Host": EVIL_HOST})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == location_prefix + response.json()["id"]
    followed = await client.get(response.headers["location"], headers=alice.headers)
    assert followed.status_code == 200
    assert followed.json()["id"] == response.json()["id"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/tasks/", "/api/v1/categories/", "/api/v1/users/me/", "/health/", "/health/live/"],
)
async def test_a_trailing_slash_is_not_redirected(
    client: httpx.AsyncClient, alice: SignedIn, path: str
) -> None:
    response = await client.get(path, headers={**alice.headers, "Host": EVIL_HOST})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["code"] == "not_found"
