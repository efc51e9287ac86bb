"""Listing agents through HTTP."""

from __future__ import annotations

import uuid


async def test_list_agents_is_paginated_by_name(api, user_api) -> None:
    ids = {await api.register(["cat"]) for _ in range(3)}
    seen: list[str] = []
    cursor = ""
    for _ in range(100):
        status, page, _ = await user_api.get(f"/v1/agents?limit=2{cursor}")
        assert status == 200 and len(page["items"]) <= 2
        seen += [agent["name"] for agent in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == sorted(seen) and len(seen) == len(set(seen)) and len(seen) >= 3
    status, one, _ = await user_api.get(f"/v1/agents/{next(iter(ids))}")
    assert status == 200 and one["image_digest"].startswith("sha256:") and one["pool"] is None


async def test_runs_use_the_recorded_image_id_after_the_tag_moves(api, images, docker_client) -> None:
    tag = f"executor/test-moving:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(images["busybox"]).tag(tag)
    try:
        agent_id = await api.register(["cat"], image=tag)
        docker_client.images.get(images["wordcount"]).tag(tag)  # the tag now names another image
        record = await api.run(agent_id, {"still": "busybox"})
        assert record["status"] == "COMPLETED" and record["output"] == {"still": "busybox"}, record
    finally:
        docker_client.images.remove(tag)
