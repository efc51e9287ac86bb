"""Operators manage images through HTTP: list, build, and remove only what no agent uses."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Callable, Iterator

import docker.errors
import pytest

from tests.api.test_request_errors import assert_problem


@pytest.fixture
def throwaway_image(docker_client, images) -> Iterator[Callable[[], str]]:
    """Builds a fresh image under executor/ on busybox; every one is removed after the test."""
    tags: list[str] = []

    def build() -> str:
        tag = f"executor/throwaway:{uuid.uuid4().hex[:8]}"
        dockerfile = f"FROM {images['busybox']}\nLABEL test.image={uuid.uuid4()}\n".encode()
        docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, pull=False)
        tags.append(tag)
        return tag

    yield build
    for tag in tags:  # a pool may still hold a container of it: then the tag goes, the layers stay
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(tag, force=True)


async def test_list_and_build(api, images) -> None:
    status, listing, _ = await api.get("/v1/images")
    assert status == 200 and {"busybox", "wordcount", "wasm"} <= set(listing["buildable"])
    found = listing["items"]
    while listing["next_cursor"] is not None:  # a page at a time, by id
        status, listing, _ = await api.get(f"/v1/images?cursor={listing['next_cursor']}")
        assert status == 200, listing
        found += listing["items"]
    busybox = next(image for image in found if "executor/busybox:latest" in image["tags"])
    assert busybox["id"].startswith("sha256:") and busybox["used_by_agent_versions"] >= 0
    status, built, _ = await api.post("/v1/images/build", json={"names": ["busybox"]})
    assert status == 200 and built["items"][0]["cached"] is True
    status, problem, headers = await api.post("/v1/images/build", json={"names": ["no-such-image"]})
    assert_problem(status, problem, headers, 422, "request_invalid")


async def test_an_image_an_agent_uses_cannot_be_deleted(api, user_api, docker_client, throwaway_image) -> None:
    tag = throwaway_image()
    agent_id = await api.register(["cat"], image=tag)
    status, problem, headers = await api.request("DELETE", f"/v1/images/{tag}")
    assert_problem(status, problem, headers, 409, "conflict")
    assert problem["errors"][0]["pointer"] == agent_id
    assert docker_client.images.get(tag)  # still there
    record = await api.run(agent_id, {"ok": True})
    assert record["status"] == "COMPLETED"

    unused = throwaway_image()
    status, problem, headers = await user_api.request("DELETE", f"/v1/images/{unused}")
    assert_problem(status, problem, headers, 403, "forbidden")
    status, _, _ = await api.request("DELETE", f"/v1/images/{unused}")
    assert status == 204
    assert unused not in [tag for image in docker_client.images.list() for tag in image.tags]
    status, problem, headers = await api.request("DELETE", f"/v1/images/{unused}")
    assert_problem(status, problem, headers, 404, "not_found")


async def test_only_images_under_executor_named_in_full_can_be_deleted(api, docker_client, throwaway_image) -> None:
    """The engine would remove any image, and take a short id prefix for one: the API removes only
    what its listing shows, named by a tag or the full id."""
    unused = throwaway_image()
    image = docker_client.images.get(unused)
    outside = f"other-{uuid.uuid4().hex[:8]}/thing:1"
    image.tag(outside)
    try:
        for ref in (outside, image.id[:12], image.id.removeprefix("sha256:")[:4], "sha256:" + image.id[7:19]):
            status, problem, headers = await api.request("DELETE", f"/v1/images/{ref}")
            assert_problem(status, problem, headers, 404, "not_found")
            assert docker_client.images.get(unused).id == image.id  # still there
        status, _, _ = await api.request("DELETE", f"/v1/images/{image.id}")
        assert status == 204
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.images.remove(outside)
