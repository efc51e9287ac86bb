"""Every list pages alike: `limit` (1 to the documented maximum, 422 `?limit` above it), an opaque
`cursor` (422 `?cursor` when it is not one we gave) and `{"items": [...], "next_cursor": ...}`.
Here for the two lists that came last to it: an execution's webhook deliveries and the images."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from executor.api.contract.executions import MAX_PAGE
from executor.errors import RequestInvalid
from executor.pagination import page_filters
from executor.storage import webhooks as webhook_sql
from tests.conftest import Api, ServiceProcess

PROBLEM = "urn:executor:problem:"
BAD_CURSORS = ("bm90LW91cnM", "nope", "!!!", "sha256:" + "z" * 64)


# -- pure: query parameters are pointed at as `?name` ---------------------------------------------

@pytest.mark.parametrize(("agent_id", "cursor", "pointers"), [
    ("not-a-uuid", None, ["?agent_id"]),
    (None, "bm90LW91cnM", ["?cursor"]),
    (str(uuid.uuid4()), "bm90LW91cnM", ["?cursor"]),
    ("not-a-uuid", "bm90LW91cnM", ["?agent_id", "?cursor"]),
])
def test_bad_page_filters_point_at_each_query_parameter(agent_id: str | None, cursor: str | None,
                                                        pointers: list[str]) -> None:
    with pytest.raises(RequestInvalid) as caught:
        page_filters(agent_id, cursor)
    assert [e["pointer"] for e in caught.value.errors or []] == pointers


# -- against the service ----------------------------------------------------------------------------

async def walk(api: Api, path: str, limit: int = 1) -> list[dict[str, Any]]:
    """Every item of a list, `limit` at a time, following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10_000):
        query = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, page, _ = await api.get(f"{path}?{query}")
        assert status == 200, page
        assert set(page) >= {"items", "next_cursor"}, page
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{path} never ended")


async def assert_pages(api: Api, path: str, key: str) -> list[dict[str, Any]]:
    """limit=1 gives one item and a next_cursor leading to the next; walking a small page at a time
    gives the same list as walking the largest pages (which may be more than one: the engine's
    images are not ours to count)."""
    items = await walk(api, path, MAX_PAGE)
    assert len(items) >= 2, items
    status, first, _ = await api.get(f"{path}?limit=1")
    assert status == 200 and len(first["items"]) == 1 and isinstance(first["next_cursor"], str), first
    status, second, _ = await api.get(f"{path}?limit=1&cursor={first['next_cursor']}")
    assert status == 200 and len(second["items"]) == 1, second
    assert [first["items"][0][key], second["items"][0][key]] == [item[key] for item in items[:2]]
    assert [item[key] for item in await walk(api, path, limit=7)] == [item[key] for item in items]
    return items


async def assert_refused(api: Api, path: str) -> None:
    """Above the maximum `limit` and a cursor not ours: 422 request_invalid, pointing at the parameter."""
    for query, pointer in ([(f"limit={MAX_PAGE + 1}", "?limit"), ("limit=0", "?limit")]
                           + [(f"cursor={bad}", "?cursor") for bad in BAD_CURSORS]):
        status, problem, _ = await api.get(f"{path}?{query}")
        assert status == 422 and problem["type"] == PROBLEM + "request_invalid", (query, problem)
        assert [e["pointer"] for e in problem["errors"]] == [pointer], (query, problem)


async def test_webhook_deliveries_page(api: Api, service: ServiceProcess, user_api: Api) -> None:
    agent_id = await api.register(["cat"])
    record = await api.run(agent_id, {"page": 1})
    assert record["status"] == "COMPLETED", record
    # One execution has one delivery of its own; two more are put in its outbox directly.
    db = await asyncpg.connect(service.env["EXECUTOR_DATABASE_URL"])
    try:
        for n in range(2):
            assert await webhook_sql.enqueue(db, execution_id=uuid.UUID(record["id"]),
                                             event_type="execution.completed", url=f"http://192.0.2.1/hook-{n}",
                                             endpoint_owner="operator:pages", payload=b"{}",
                                             new_secret="whsec_" + "A" * 32)
    finally:
        await db.close()
    path = f"/v1/executions/{record['id']}/webhooks"
    items = await assert_pages(api, path, "id")
    assert {item["execution_id"] for item in items} == {record["id"]}
    assert [item["url"] for item in items][-2:] == ["http://192.0.2.1/hook-0", "http://192.0.2.1/hook-1"]
    await assert_refused(api, path)
    status, problem, _ = await user_api.get(f"{path}?limit=1")  # still only for whoever sees the execution
    assert status == 404, problem


async def test_images_page(api: Api) -> None:
    items = await assert_pages(api, "/v1/images", "id")
    assert [item["id"] for item in items] == sorted(item["id"] for item in items)
    status, page, _ = await api.get("/v1/images?limit=1")
    assert {"busybox", "wordcount"} <= set(page["buildable"]), page
    await assert_refused(api, "/v1/images")
    # A cursor past every image (an id no image has) is the end, not an error.
    status, page, _ = await api.get(f"/v1/images?cursor=sha256:{'f' * 64}")
    assert status == 200 and page["items"] == [] and page["next_cursor"] is None, page


async def test_other_lists_point_at_their_query_parameters(api: Api) -> None:
    for path in ("/v1/executions", "/v1/entitlements"):
        for query, pointer in (("agent_id=not-a-uuid", "?agent_id"), ("cursor=bm90LW91cnM", "?cursor")):
            status, problem, _ = await api.get(f"{path}?{query}")
            assert status == 422 and [e["pointer"] for e in problem["errors"]] == [pointer], (path, query, problem)


async def test_executions_by_creation_window(api: Api) -> None:
    """`created_since` is inclusive and `created_before` exclusive: consecutive windows split the
    list without a gap or a repeat; both narrow the other filters and page like the rest."""
    agent_id = await api.register(["cat"])
    ids = [(await api.run(agent_id, {"n": n}))["id"] for n in range(3)]
    status, page, _ = await api.get(f"/v1/executions?agent_id={agent_id}")
    assert status == 200 and [e["id"] for e in page["items"]] == ids[::-1], page
    created = {e["id"]: e["created_at"] for e in page["items"]}
    middle = quote(created[ids[1]])  # the record's own form, with its offset; `+` must be escaped

    async def listed(query: str) -> list[str]:
        status, page, _ = await api.get(f"/v1/executions?agent_id={agent_id}&{query}")
        assert status == 200, (query, page)
        return [e["id"] for e in page["items"]]

    assert await listed(f"created_since={middle}") == [ids[2], ids[1]]
    assert await listed(f"created_before={middle}") == [ids[0]]
    assert await listed(f"created_since={middle}&created_before={middle}") == []
    assert await listed(f"created_since={middle}&limit=1") == [ids[2]]
    assert await listed("created_before=2000-01-01T00:00:00Z") == []
    assert await listed("created_since=2000-01-01T00:00:00%2B05:00") == ids[::-1]
    # A window in another offset names the same instants.
    first = datetime.fromisoformat(created[ids[0]]).astimezone(timezone(timedelta(hours=-7)))
    assert await listed(f"created_since={quote(first.isoformat())}") == ids[::-1]

    for bad in ("yesterday", "2026-12-06T10:00:00", "2026-12-06 10:00:00Z", "2026-13-01T00:00:00Z", ""):
        for name in ("created_since", "created_before"):
            status, problem, _ = await api.get(f"/v1/executions?{name}={quote(bad)}")
            assert status == 422 and problem["type"] == PROBLEM + "request_invalid", (name, bad, problem)
            assert [e["pointer"] for e in problem["errors"]] == [f"?{name}"], (name, bad, problem)
