from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.config import Settings
from tests.support.categories import (
    CATEGORIES,
    TASKS,
    create_category,
    create_task,
    link_path,
    stored_links,
    stored_task,
)
from tests.support.factories import SignedIn, sign_in
from tests.support.problems import assert_problem

# --- assign ---------------------------------------------------------------------------------


async def test_assign_answers_the_task_with_its_category_and_bumps_the_version(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work", color="#0EA5E9")

    response = await client.post(link_path(task, work), headers=alice.headers)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == task["id"]
    assert body["categories"] == [work]
    assert body["version"] == task["version"] + 1
    assert response.headers["etag"] == f'"{body["version"]}"'
    assert body["updated_at"] >= task["updated_at"]
    assert await stored_links(session) == {(task["id"], work["id"])}
    stored = await stored_task(session, task["id"])
    assert stored.version == task["version"] + 1


async def test_a_second_category_is_added_and_categories_come_sorted_by_name(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    admin = await create_category(client, alice, "Admin")
    await client.post(link_path(task, work), headers=alice.headers)

    response = await client.post(link_path(task, admin), headers=alice.headers)

    assert response.status_code == 200
    assert [category["name"] for category in response.json()["categories"]] == ["Admin", "Work"]
    assert response.json()["version"] == task["version"] + 2
    assert await stored_links(session) == {(task["id"], work["id"]), (task["id"], admin["id"])}


async def test_assigning_twice_is_409_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    first = await client.post(link_path(task, work), headers=alice.headers)

    response = await client.post(link_path(task, work), headers=alice.headers)

    assert_problem(response, 409, "category_already_assigned")
    assert await stored_links(session) == {(task["id"], work["id"])}
    assert (await stored_task(session, task["id"])).version == first.json()["version"]


async def test_concurrent_assignments_of_one_pair_give_one_200_and_409s(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")

    responses = await asyncio.gather(
        *(client.post(link_path(task, work), headers=alice.headers) for _ in range(5))
    )

    assert sorted(response.status_code for response in responses) == [200, 409, 409, 409, 409]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "category_already_assigned")
    assert await stored_links(session) == {(task["id"], work["id"])}
    assert (await stored_task(session, task["id"])).version == task["version"] + 1


@pytest.mark.parametrize(
    ("task_owner", "category_owner"),
    [("bob", "alice"), ("alice", "bob"), ("bob", "bob")],
)
async def test_a_foreign_task_or_category_is_404_and_nothing_is_linked(
    client: httpx.AsyncClient,
    session: AsyncSession,
    alice: SignedIn,
    bob: SignedIn,
    task_owner: str,
    category_owner: str,
) -> None:
    people = {"alice": alice, "bob": bob}
    task = await create_task(client, people[task_owner], "Somebody's task")
    category = await create_category(client, people[category_owner], "Somebody's")

    response = await client.post(link_path(task, category), headers=alice.headers)

    assert_problem(response, 404, "not_found")
    assert await stored_links(session) == set()
    assert (await stored_task(session, task["id"])).version == task["version"]


async def test_a_missing_task_or_category_is_404_and_nothing_is_linked(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")

    no_task = await client.post(link_path(str(uuid.uuid4()), work), headers=alice.headers)
    no_category = await client.post(link_path(task, str(uuid.uuid4())), headers=alice.headers)

    assert assert_problem(no_task, 404, "not_found")["detail"] == "Task not found."
    assert assert_problem(no_category, 404, "not_found")["detail"] == "Category not found."
    assert await stored_links(session) == set()
    assert (await stored_task(session, task["id"])).version == task["version"]


async def test_a_deleted_task_is_404_and_nothing_is_linked(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    assert (await client.delete(f"{TASKS}/{task['id']}", headers=alice.headers)).status_code == 204

    response = await client.post(link_path(task, work), headers=alice.headers)

    assert_problem(response, 404, "not_found")
    assert await stored_links(session) == set()


async def test_foreign_answers_are_exactly_like_missing_ones(
    client: httpx.AsyncClient, alice: SignedIn, bob: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    bobs_task = await create_task(client, bob, "Bob's task")
    bobs_category = await create_category(client, bob, "Bob's")

    pairs = [
        (link_path(bobs_task, work), link_path(str(uuid.uuid4()), work)),
        (link_path(task, bobs_category), link_path(task, str(uuid.uuid4()))),
    ]
    for foreign_path, missing_path in pairs:
        for method in ("POST", "DELETE"):
            foreign = await client.request(method, foreign_path, headers=alice.headers)
            missing = await client.request(method, missing_path, headers=alice.headers)
            foreign_body = assert_problem(foreign, 404, "not_found")
            missing_body = assert_problem(missing, 404, "not_found")
            assert {**foreign_body, "request_id": None} == {**missing_body, "request_id": None}


# --- remove ---------------------------------------------------------------------------------


async def test_remove_unlinks_and_bumps_the_version(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    home = await create_category(client, alice, "Home")
    await client.post(link_path(task, work), headers=alice.headers)
    assigned = await client.post(link_path(task, home), headers=alice.headers)

    response = await client.delete(link_path(task, work), headers=alice.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert await stored_links(session) == {(task["id"], home["id"])}
    assert (await stored_task(session, task["id"])).version == assigned.json()["version"] + 1
    fetched = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert [category["name"] for category in fetched.json()["categories"]] == ["Home"]
    assert fetched.json()["version"] == assigned.json()["version"] + 1


async def test_removing_a_category_the_task_does_not_have_is_404(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")

    response = await client.delete(link_path(task, work), headers=alice.headers)

    assert_problem(response, 404, "category_not_assigned")
    assert (await stored_task(session, task["id"])).version == task["version"]


async def test_removing_twice_is_404_the_second_time(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    assigned = (await client.post(link_path(task, work), headers=alice.headers)).json()
    assert (await client.delete(link_path(task, work), headers=alice.headers)).status_code == 204

    response = await client.delete(link_path(task, work), headers=alice.headers)

    assert_problem(response, 404, "category_not_assigned")
    assert await stored_links(session) == set()
    assert (await stored_task(session, task["id"])).version == assigned["version"] + 1


async def test_concurrent_removals_give_one_204_and_404s(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    assigned = (await client.post(link_path(task, work), headers=alice.headers)).json()

    responses = await asyncio.gather(
        *(client.delete(link_path(task, work), headers=alice.headers) for _ in range(4))
    )

    assert sorted(response.status_code for response in responses) == [204, 404, 404, 404]
    assert await stored_links(session) == set()
    assert (await stored_task(session, task["id"])).version == assigned["version"] + 1


async def test_removing_from_anothers_task_is_404_and_leaves_their_link(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn, bob: SignedIn
) -> None:
    bobs_task = await create_task(client, bob, "Bob's task")
    bobs_category = await create_category(client, bob, "Bob's")
    assigned = (await client.post(link_path(bobs_task, bobs_category), headers=bob.headers)).json()

    response = await client.delete(link_path(bobs_task, bobs_category), headers=alice.headers)

    assert_problem(response, 404, "not_found")
    assert await stored_links(session) == {(bobs_task["id"], bobs_category["id"])}
    assert (await stored_task(session, bobs_task["id"])).version == assigned["version"]


# --- seen through the task endpoints --------------------------------------------------------


async def test_the_task_list_filters_by_an_assigned_category(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    tagged = await create_task(client, alice, "Tagged task")
    await create_task(client, alice, "Other task")
    work = await create_category(client, alice, "Work")
    await client.post(link_path(tagged, work), headers=alice.headers)

    listed = await client.get(TASKS, params={"category_id": work["id"]}, headers=alice.headers)

    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [tagged["id"]]
    assert listed.json()["items"][0]["categories"] == [work]
    assert listed.json()["total"] == 1

    await client.delete(link_path(tagged, work), headers=alice.headers)
    after = await client.get(TASKS, params={"category_id": work["id"]}, headers=alice.headers)
    assert after.json()["items"] == []


async def test_get_task_embeds_its_categories(client: httpx.AsyncClient, alice: SignedIn) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    assigned = await client.post(link_path(task, work), headers=alice.headers)

    fetched = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)

    assert fetched.status_code == 200
    assert fetched.json() == assigned.json()
    assert fetched.json()["categories"] == [work]
    assert fetched.headers["etag"] == assigned.headers["etag"]


async def test_a_stale_version_is_refused_after_an_assignment(
    client: httpx.AsyncClient, alice: SignedIn
) -> None:
    task = await create_task(client, alice, "Write the report")
    work = await create_category(client, alice, "Work")
    await client.post(link_path(task, work), headers=alice.headers)

    response = await client.patch(
        f"{TASKS}/{task['id']}",
        json={"status": "completed", "version": task["version"]},
        headers=alice.headers,
    )

    assert_problem(response, 409, "version_conflict")
    assert response.json()["current_version"] == task["version"] + 1


async def test_deleting_a_category_on_several_tasks_drops_the_links_and_keeps_the_tasks(
    client: httpx.AsyncClient, session: AsyncSession, alice: SignedIn
) -> None:
    doomed = await create_category(client, alice, "Doomed")
    kept = await create_category(client, alice, "Kept")
    tasks = [await create_task(client, alice, f"Task {n}") for n in range(3)]
    versions: dict[str, Any] = {}
    for task in tasks:
        await client.post(link_path(task, doomed), headers=alice.headers)
        response = await client.post(link_path(task, kept), headers=alice.headers)
        versions[task["id"]] = response.json()["version"]

    response = await client.delete(f"{CATEGORIES}/{doomed['id']}", headers=alice.headers)

    assert response.status_code == 204
    assert await stored_links(session) == {(task["id"], kept["id"]) for task in tasks}
    for task in tasks:
        fetched = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
        assert fetched.status_code == 200
        assert fetched.json()["categories"] == [kept]
        # Chosen: deleting a category leaves the versions of its tasks as they were.
        assert fetched.json()["version"] == versions[task["id"]]
    listed = await client.get(TASKS, params={"category_id": doomed["id"]}, headers=alice.headers)
    assert listed.json()["items"] == []


# --- who may call ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_assignment_routes_need_a_token(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, link_path(str(uuid.uuid4()), str(uuid.uuid4())))

    assert_problem(response, 401, "not_authenticated")


async def test_an_unverified_user_cannot_assign(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    unverified = await sign_in(session, settings, is_active=False)

    response = await client.post(
        link_path(str(uuid.uuid4()), str(uuid.uuid4())), headers=unverified.headers
    )

    assert_problem(response, 403, "email_not_verified")


async def test_assignment_routes_are_documented(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    item = document["paths"][f"{TASKS}/{{task_id}}/categories/{{category_id}}"]

    assert set(item) == {"post", "delete"}
    assert item["post"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskRead"
    }
    assert {"400", "401", "403", "404", "409"} <= set(item["post"]["responses"])
    assert {"204", "400", "401", "403", "404"} <= set(item["delete"]["responses"])
    for operation in item.values():
        assert operation["summary"]
        assert operation["tags"] == ["categories"]
