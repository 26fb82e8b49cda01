from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Settings
from taskapi.tasks.models import Task, task_categories
from tests.support.apps import AppFactory, SettingsFactory, make_client
from tests.support.categories import (
    CATEGORIES,
    create_category,
    stored_categories,
    stored_category,
)
from tests.support.factories import SignedIn, sign_in
from tests.support.problems import assert_problem, field_errors

# --- create ---------------------------------------------------------------------------------


async def test_create_returns_201_with_default_color_and_stores_it(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    response = await client.post(CATEGORIES, json={"name": "Work"}, headers=alice.headers)

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Work"
    assert body["color"] == "#6366F1"
    assert set(body) == {"id", "name", "color", "created_at", "updated_at"}
    assert response.headers["location"] == f"{CATEGORIES}/{body['id']}"
    [stored] = await stored_categories(session, alice)
    assert (str(stored.id), stored.name, stored.color) == (body["id"], "Work", "#6366F1")


async def test_create_trims_the_name_and_stores_the_color_in_upper_case(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    body = await create_category(client, alice, "  Home  ", color="#0ea5e9")

    assert (body["name"], body["color"]) == ("Home", "#0EA5E9")
    [stored] = await stored_categories(session, alice)
    assert (stored.name, stored.color) == ("Home", "#0EA5E9")


@pytest.mark.parametrize(
    "color", ["red", "#12345", "#GGGGGG", "#1234567", "6366F1", "", " #6366F1"]
)
async def test_create_rejects_a_color_that_is_not_rrggbb(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, color: str
) -> None:
    response = await client.post(
        CATEGORIES, json={"name": "Work", "color": color}, headers=alice.headers
    )

    assert field_errors(response) == {"color"}
    assert await stored_categories(session, alice) == []


@pytest.mark.parametrize("name", ["ab", "  ab  ", "x" * 51, "   ", ""])
async def test_create_rejects_a_name_outside_3_to_50_after_trimming(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, name: str
) -> None:
    response = await client.post(CATEGORIES, json={"name": name}, headers=alice.headers)

    assert field_errors(response) == {"name"}
    assert await stored_categories(session, alice) == []


@pytest.mark.parametrize("name", ["abc", "  abc  ", "x" * 50, f"  {'y' * 50}  "])
async def test_create_accepts_names_of_3_and_50_after_trimming(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, name: str
) -> None:
    body = await create_category(client, alice, name)

    assert body["name"] == name.strip()
    assert [stored.name for stored in await stored_categories(session, alice)] == [name.strip()]


async def test_create_requires_a_name(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    response = await client.post(CATEGORIES, json={"color": "#FFFFFF"}, headers=alice.headers)

    assert field_errors(response) == {"name"}
    assert await stored_categories(session, alice) == []


async def test_create_same_name_twice_is_409_and_stores_one(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    first = await create_category(client, alice, "Work")

    response = await client.post(CATEGORIES, json={"name": " Work "}, headers=alice.headers)

    assert_problem(response, 409, "category_exists")
    assert [str(stored.id) for stored in await stored_categories(session, alice)] == [first["id"]]


async def test_names_are_free_across_users(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, bob: SignedIn
) -> None:
    await create_category(client, alice, "Work")

    await create_category(client, bob, "Work")

    assert [stored.name for stored in await stored_categories(session, bob)] == ["Work"]
    assert [stored.name for stored in await stored_categories(session, alice)] == ["Work"]


async def test_names_differing_in_case_are_different_names(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    await create_category(client, alice, "work")
    await create_category(client, alice, "Work")

    assert {stored.name for stored in await stored_categories(session, alice)} == {"work", "Work"}


async def test_concurrent_creates_of_one_name_give_one_201_and_409s(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(CATEGORIES, json={"name": "Errands"}, headers=alice.headers)
            for _ in range(5)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409, 409]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "category_exists")
    created = next(response.json() for response in responses if response.status_code == 201)
    assert [str(stored.id) for stored in await stored_categories(session, alice)] == [created["id"]]


# --- list -----------------------------------------------------------------------------------


async def test_list_is_empty_for_a_new_user(client: httpx.AsyncClient, alice: SignedIn) -> None:
    response = await client.get(CATEGORIES, headers=alice.headers)

    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0}


async def test_list_holds_only_own_categories_sorted_case_insensitively(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn
) -> None:
    for name in ["beta", "Zulu", "Ärger", "alpha", "gamma", "Alpha"]:
        await create_category(client, alice, name)
    await create_category(client, bob, "Aardvark")

    response = await client.get(CATEGORIES, headers=alice.headers)

    assert response.status_code == 200
    body = response.json()
    # Case-folded name first, then the exact name (code points: "A" before "a").
    assert [item["name"] for item in body["items"]] == [
        "Alpha",
        "alpha",
        "beta",
        "gamma",
        "Zulu",
        "Ärger",
    ]
    assert body["total"] == 6


# --- get one --------------------------------------------------------------------------------


async def test_get_one_returns_the_category(client: httpx.AsyncClient, alice: SignedIn) -> None:
    created = await create_category(client, alice, "Work", color="#22C55E")

    response = await client.get(f"{CATEGORIES}/{created['id']}", headers=alice.headers)

    assert response.status_code == 200
    assert response.json() == created


async def test_another_users_category_is_404_exactly_like_a_missing_one(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn
) -> None:
    foreign = await create_category(client, bob, "Private")

    foreign_response = await client.get(f"{CATEGORIES}/{foreign['id']}", headers=alice.headers)
    missing_response = await client.get(f"{CATEGORIES}/{uuid.uuid4()}", headers=alice.headers)

    foreign_body = assert_problem(foreign_response, 404, "not_found")
    missing_body = assert_problem(missing_response, 404, "not_found")
    assert {**foreign_body, "request_id": None} == {**missing_body, "request_id": None}


async def test_a_malformed_id_is_400(client: httpx.AsyncClient, alice: SignedIn) -> None:
    response = await client.get(f"{CATEGORIES}/not-a-uuid", headers=alice.headers)

    assert field_errors(response) == {"category_id"}


# --- update ---------------------------------------------------------------------------------


async def test_patch_renames_and_keeps_the_color(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = await create_category(client, alice, "Work", color="#22C55E")

    response = await client.patch(
        f"{CATEGORIES}/{created['id']}", json={"name": "  Office "}, headers=alice.headers
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["color"]) == (created["id"], "Office", "#22C55E")
    assert body["updated_at"] >= created["updated_at"]
    stored = await stored_category(session, created["id"])
    assert stored is not None
    assert (stored.name, stored.color) == ("Office", "#22C55E")


async def test_patch_recolors_and_keeps_the_name(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = await create_category(client, alice, "Work")

    response = await client.patch(
        f"{CATEGORIES}/{created['id']}", json={"color": "#abcdef"}, headers=alice.headers
    )

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["color"]) == ("Work", "#ABCDEF")
    stored = await stored_category(session, created["id"])
    assert stored is not None
    assert (stored.name, stored.color) == ("Work", "#ABCDEF")


async def test_patch_with_an_empty_body_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = await create_category(client, alice, "Work")

    response = await client.patch(f"{CATEGORIES}/{created['id']}", json={}, headers=alice.headers)

    assert response.status_code == 200
    assert response.json() == created
    stored = await stored_category(session, created["id"])
    assert stored is not None
    assert (stored.name, stored.color) == ("Work", "#6366F1")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": None}, "name"),
        ({"color": None}, "color"),
        ({"name": "ab"}, "name"),
        ({"name": "z" * 51}, "name"),
        ({"name": "Nul\x00byte"}, "name"),
        ({"color": "#GGGGGG"}, "color"),
    ],
)
async def test_patch_rejects_null_and_invalid_fields(
    client: httpx.AsyncClient,
    session: AsyncSession,
    alice: SignedIn,
    payload: dict[str, object],
    field: str,
) -> None:
    created = await create_category(client, alice, "Work")

    response = await client.patch(
        f"{CATEGORIES}/{created['id']}", json=payload, headers=alice.headers
    )

    assert field_errors(response) == {field}
    stored = await stored_category(session, created["id"])
    assert stored is not None
    assert (stored.name, stored.color) == ("Work", "#6366F1")


async def test_patch_to_an_existing_name_is_409_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    await create_category(client, alice, "Home")
    work = await create_category(client, alice, "Work")

    response = await client.patch(
        f"{CATEGORIES}/{work['id']}",
        json={"name": "Home", "color": "#000000"},
        headers=alice.headers,
    )

    assert_problem(response, 409, "category_exists")
    stored = await stored_category(session, work["id"])
    assert stored is not None
    assert (stored.name, stored.color) == ("Work", "#6366F1")


async def test_patch_to_its_own_name_is_fine(client: httpx.AsyncClient, alice: SignedIn) -> None:
    created = await create_category(client, alice, "Work")

    response = await client.patch(
        f"{CATEGORIES}/{created['id']}", json={"name": "Work"}, headers=alice.headers
    )

    assert response.status_code == 200
    assert response.json()["name"] == "Work"


async def test_patch_to_a_name_another_user_has_is_fine(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn
) -> None:
    await create_category(client, bob, "Home")
    work = await create_category(client, alice, "Work")

    response = await client.patch(
        f"{CATEGORIES}/{work['id']}", json={"name": "Home"}, headers=alice.headers
    )

    assert response.status_code == 200
    assert response.json()["name"] == "Home"


async def test_patch_of_another_users_category_is_404_and_leaves_it(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, bob: SignedIn
) -> None:
    foreign = await create_category(client, bob, "Private")

    response = await client.patch(
        f"{CATEGORIES}/{foreign['id']}", json={"name": "Mine now"}, headers=alice.headers
    )

    assert_problem(response, 404, "not_found")
    stored = await stored_category(session, foreign["id"])
    assert stored is not None
    assert stored.name == "Private"


async def test_concurrent_renames_to_one_name_give_one_200_and_a_409(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    first = await create_category(client, alice, "First")
    second = await create_category(client, alice, "Second")

    responses = await asyncio.gather(
        *(
            client.patch(f"{CATEGORIES}/{item['id']}", json={"name": "Same"}, headers=alice.headers)
            for item in (first, second)
        )
    )

    assert sorted(response.status_code for response in responses) == [200, 409]
    assert sorted(stored.name for stored in await stored_categories(session, alice)) in (
        ["Same", "Second"],
        ["First", "Same"],
    )


# --- delete ---------------------------------------------------------------------------------


async def test_delete_removes_the_category(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    created = await create_category(client, alice, "Work")

    response = await client.delete(f"{CATEGORIES}/{created['id']}", headers=alice.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert await stored_category(session, created["id"]) is None
    again = await client.delete(f"{CATEGORIES}/{created['id']}", headers=alice.headers)
    assert_problem(again, 404, "not_found")


async def test_delete_of_another_users_category_is_404_and_keeps_it(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, bob: SignedIn
) -> None:
    foreign = await create_category(client, bob, "Private")

    response = await client.delete(f"{CATEGORIES}/{foreign['id']}", headers=alice.headers)

    assert_problem(response, 404, "not_found")
    assert await stored_category(session, foreign["id"]) is not None


async def test_delete_drops_its_task_links_and_keeps_the_tasks(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    doomed = await create_category(client, alice, "Doomed")
    kept = await create_category(client, alice, "Kept")
    tasks = [Task(user_id=alice.user.id, title=f"Task {n}") for n in range(3)]
    session.add_all(tasks)
    await session.flush()
    await session.execute(
        task_categories.insert(),
        [
            {"task_id": task.id, "category_id": uuid.UUID(category["id"])}
            for task in tasks
            for category in (doomed, kept)
        ],
    )
    await session.commit()

    response = await client.delete(f"{CATEGORIES}/{doomed['id']}", headers=alice.headers)

    assert response.status_code == 204
    links = (
        await session.execute(select(task_categories.c.task_id, task_categories.c.category_id))
    ).all()
    assert sorted(links) == sorted((task.id, uuid.UUID(kept["id"])) for task in tasks)
    stored_tasks = (await session.scalars(select(Task).where(Task.user_id == alice.user.id))).all()
    assert {task.id for task in stored_tasks} == {task.id for task in tasks}
    assert all(task.deleted_at is None and task.version == 1 for task in stored_tasks)
    await session.commit()


# --- who may call ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", CATEGORIES),
        ("POST", CATEGORIES),
        ("GET", f"{CATEGORIES}/{uuid.UUID(int=1)}"),
        ("PATCH", f"{CATEGORIES}/{uuid.UUID(int=1)}"),
        ("DELETE", f"{CATEGORIES}/{uuid.UUID(int=1)}"),
    ],
)
async def test_every_route_needs_a_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, json={"name": "Work"})

    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unverified_user_gets_403_and_nothing_is_stored(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    unverified = await sign_in(session, settings, is_active=False)

    response = await client.post(CATEGORIES, json={"name": "Work"}, headers=unverified.headers)

    assert_problem(response, 403, "email_not_verified")
    assert await stored_categories(session, unverified) == []


async def test_an_unverified_user_may_work_when_verification_is_off(
    app_factory: AppFactory, make_settings: SettingsFactory, session: AsyncSession
) -> None:
    settings = make_settings(require_email_verification=False)
    app = await app_factory(settings)
    unverified = await sign_in(session, settings, is_active=False)
    async with make_client(app) as http:
        response = await http.post(CATEGORIES, json={"name": "Work"}, headers=unverified.headers)

    assert response.status_code == 201
    assert [stored.name for stored in await stored_categories(session, unverified)] == ["Work"]


# --- documentation --------------------------------------------------------------------------


async def test_every_category_route_is_documented(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        if path.startswith(CATEGORIES)
        for method, operation in item.items()
    }

    assert set(operations) == {
        ("get", CATEGORIES),
        ("post", CATEGORIES),
        ("get", f"{CATEGORIES}/{{category_id}}"),
        ("patch", f"{CATEGORIES}/{{category_id}}"),
        ("delete", f"{CATEGORIES}/{{category_id}}"),
    }
    for (method, path), operation in operations.items():
        assert operation["summary"]
        assert operation["tags"] == ["categories"]
        takes_input = method != "get" or path != CATEGORIES
        expected = {"401", "403"} | ({"400"} if takes_input else set())
        assert expected <= set(operation["responses"]), (method, path)
        for status in expected:
            content = operation["responses"][status]["content"]
            assert set(content) == {"application/problem+json"}
    schemas = document["components"]["schemas"]
    for name in ("CategoryCreate", "CategoryUpdate", "CategoryRead", "CategoryList"):
        assert "example" in schemas[name]
    assert "null" not in str(schemas["CategoryUpdate"]["properties"]["name"])


async def test_create_rejects_a_name_with_a_nul_character(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    """PostgreSQL text cannot hold NUL; without this rule the insert failed with a 500."""
    response = await client.post(CATEGORIES, json={"name": "Nul\x00byte"}, headers=alice.headers)

    body = assert_problem(response, 400, "validation_error")
    assert body["errors"] == [{"field": "name", "message": "Must not contain NUL characters"}]
    assert await stored_categories(session, alice) == []
