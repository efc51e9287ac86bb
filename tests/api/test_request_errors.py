"""Bad requests get a clear application/problem+json answer with a stable type."""

from __future__ import annotations

import uuid

PROBLEM = "urn:executor:problem:"


def assert_problem(status: int, body, headers, expected_status: int, slug: str) -> None:
    assert status == expected_status, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"] == PROBLEM + slug and body["status"] == expected_status and body["detail"]


async def test_malformed_json_is_400(api) -> None:
    status, body, headers = await api.post("/v1/executions", data=b'{"agent_id": ',
                                           headers={"Content-Type": "application/json"})
    assert_problem(status, body, headers, 400, "malformed_request")


async def test_schema_violations_are_422_listing_each_one(api) -> None:
    agent_id = await api.register(["cat"], input_schema={
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "integer"}}},
        "required": ["name"],
        "additionalProperties": False,
    })
    status, body, headers = await api.post(
        "/v1/executions", json={"agent_id": agent_id, "input": {"tags": [1, "two", 3, "four"], "extra": True}}
    )
    assert_problem(status, body, headers, 422, "input_invalid")
    pointers = sorted(error["pointer"] for error in body["errors"])
    assert pointers == ["", "", "/tags/1", "/tags/3"]  # missing name, extra property, two bad items
    assert all(error["detail"] for error in body["errors"])
    # Nothing was stored for a rejected request.
    status, page, _ = await api.get(f"/v1/executions?agent_id={agent_id}")
    assert page["items"] == []


async def test_unknown_agent_is_404(api) -> None:
    status, body, headers = await api.post("/v1/executions", json={"agent_id": str(uuid.uuid4()), "input": {}})
    assert_problem(status, body, headers, 404, "not_found")
    status, body, headers = await api.get("/v1/agents/not-a-uuid")
    assert_problem(status, body, headers, 404, "not_found")


async def test_missing_or_wrong_token_is_401(api) -> None:
    for token in (None, "exe_wrong"):
        status, body, headers = await api.as_token(token).get("/v1/executions")
        assert_problem(status, body, headers, 401, "unauthenticated")
        assert headers["WWW-Authenticate"] == "Bearer"
    status, body, _ = await api.as_token(None).get("/healthz")
    assert status == 200


async def test_another_users_execution_is_404(api, user_api) -> None:
    agent_id = await api.register(["cat"])
    await api.grant(user_api.subject, agent_id)
    record = await user_api.run(agent_id, {"mine": True})
    status, issued, _ = await api.post("/v1/tokens", json={"role": "user", "subject": "somebody-else"})
    other = api.as_token(issued["token"])
    for path in (f"/v1/executions/{record['id']}", f"/v1/executions/{record['id']}/logs"):
        status, body, headers = await other.get(path)
        assert_problem(status, body, headers, 404, "not_found")
    status, body, headers = await other.post(f"/v1/executions/{record['id']}/cancel")
    assert_problem(status, body, headers, 404, "not_found")
    status, page, _ = await other.get("/v1/executions")
    assert page["items"] == []
    status, mine, _ = await user_api.get(f"/v1/executions/{record['id']}")
    assert status == 200 and mine["output"] == {"mine": True}


async def test_body_over_the_cap_is_413(api) -> None:
    agent_id = await api.register(["cat"])
    big = b'{"agent_id": "%s", "input": {"x": "' % agent_id.encode() + b"a" * (3 * 1024 * 1024) + b'"}}'
    status, body, headers = await api.post("/v1/executions", data=big, headers={"Content-Type": "application/json"})
    assert_problem(status, body, headers, 413, "payload_too_large")


async def test_limit_above_the_maximum_is_422(api) -> None:
    agent_id = await api.register(["cat"])
    status, body, headers = await api.post(
        "/v1/executions", json={"agent_id": agent_id, "input": {}, "limits": {"memory_mb": 10**6}}
    )
    assert_problem(status, body, headers, 422, "limit_exceeded")
    assert body["errors"][0]["pointer"] == "/limits/memory_mb"
    status, body, headers = await api.post("/v1/agents", json={
        "name": f"too-big-{uuid.uuid4().hex[:6]}", "image": "executor/busybox:latest",
        "input_schema": True, "output_schema": True, "limits": {"timeout_s": 10**5},
    })
    assert_problem(status, body, headers, 422, "limit_exceeded")


async def test_roles_are_enforced(user_api) -> None:
    status, body, headers = await user_api.post("/v1/tokens", json={"role": "operator", "subject": "me"})
    assert_problem(status, body, headers, 403, "forbidden")
    status, body, headers = await user_api.post("/v1/agents", json={"name": "x"})
    assert_problem(status, body, headers, 403, "forbidden")


async def test_agent_registration_checks(api) -> None:
    base = {"image": "executor/busybox:latest", "input_schema": {"type": "object"}, "output_schema": True}
    status, body, headers = await api.post("/v1/agents", json={**base, "name": f"a-{uuid.uuid4().hex[:6]}",
                                                               "input_schema": {"type": "no-such-type"}})
    assert_problem(status, body, headers, 422, "schema_invalid")
    # A remote $ref is refused, never fetched.
    status, body, headers = await api.post("/v1/agents", json={
        **base, "name": f"a-{uuid.uuid4().hex[:6]}", "input_schema": {"$ref": "http://127.0.0.1:9/evil.json"}})
    assert_problem(status, body, headers, 422, "schema_invalid")
    status, body, headers = await api.post("/v1/agents", json={**base, "name": f"a-{uuid.uuid4().hex[:6]}",
                                                               "image": "executor/no-such-image:1"})
    assert_problem(status, body, headers, 422, "image_not_found")
    name = f"a-{uuid.uuid4().hex[:6]}"
    status, agent, _ = await api.post("/v1/agents", json={**base, "name": name})
    assert status == 201 and agent["image_digest"].startswith("sha256:") and agent["version"] == 1
    status, body, headers = await api.post("/v1/agents", json={**base, "name": name})
    assert_problem(status, body, headers, 409, "conflict")
    status, fetched, _ = await api.get(f"/v1/agents/{agent['id']}")
    assert fetched == agent


async def test_unknown_route_is_a_problem_too(api) -> None:
    status, body, headers = await api.get("/v1/nothing-here")
    assert_problem(status, body, headers, 404, "not_found")


async def test_strings_postgresql_cannot_store_are_refused(api) -> None:
    agent_id = await api.register(["cat"])
    for raw, pointer in (('{"s": "a\\u0000b"}', "/s"), ('{"list": ["ok", "\\ud800"]}', "/list/1"),
                         ('{"\\u0000": 1}', "/\x00")):
        body = f'{{"agent_id": "{agent_id}", "input": {raw}}}'.encode()
        status, problem, headers = await api.post("/v1/executions", data=body)
        assert_problem(status, problem, headers, 422, "request_invalid")
        assert problem["errors"][0]["pointer"] == "/input" + pointer


async def test_a_fixed_path_is_never_taken_for_a_parameter(api) -> None:
    """/v1/executions/batch and /v1/images/build are routes of their own: another method there is
    405 with their Allow, never an execution called "batch" or an image called "build"."""
    for method, path, allowed in (("GET", "/v1/executions/batch", "POST"), ("DELETE", "/v1/images/build", "POST")):
        status, problem, headers = await api.request(method, path)
        assert_problem(status, problem, headers, 405, "method_not_allowed")
        assert headers["Allow"] == allowed, headers
