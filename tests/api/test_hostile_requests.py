"""Hostile request bodies, parameters and headers get a 4xx problem, never a 500 (families 2, 4, 6, 7).

Each case stands for a family: a non-finite or unreadable number anywhere in a body, nesting past
the service's depth, bytes that are not UTF-8 where text is expected, a body of the wrong shape.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import Api, ServiceProcess

PROBLEM = "urn:executor:problem:"

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 5000]


def assert_problem(status: int, body: Any, headers: Any, *statuses: int) -> None:
    assert status in statuses, (status, body)
    assert headers["Content-Type"].startswith("application/problem+json"), headers
    assert body["type"].startswith(PROBLEM) and body["status"] == status and body["detail"], body


async def _raw_post(api: Api, path: str, text: str) -> tuple[int, Any, Any]:
    return await api.post(path, data=text.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("number", NON_FINITE)
async def test_non_finite_numbers_anywhere_in_a_body_are_refused(api: Api, number: str) -> None:
    agent_id = await api.register(["cat"])
    bodies = {
        "/v1/executions": [
            f'{{"agent_id": "{agent_id}", "input": {{"x": {number}}}}}',
            f'{{"agent_id": "{agent_id}", "input": {{}}, "limits": {{"timeout_s": {number}}}}}',
            f'{{"agent_id": "{agent_id}", "input": {{}}, "limits": {{"memory_mb": {number}}}}}',
            f'{{"agent_id": "{agent_id}", "input": {{}}, "version": {number}}}',
        ],
        "/v1/agents": [
            f'{{"name": "n-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest", "input_schema": true,'
            f' "output_schema": true, "limits": {{"cpus": {number}}}}}',
            f'{{"name": "n-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest", "input_schema":'
            f' {{"maximum": {number}}}, "output_schema": true}}',
        ],
        "/v1/receipts/verify": [f'{{"receipt": {number}}}'],
        "/v1/tokens": [f'{{"role": "user", "subject": {number}}}'],
    }
    for path, texts in bodies.items():
        for text in texts:
            status, body, headers = await _raw_post(api, path, text)
            assert_problem(status, body, headers, 400, 422)


async def test_integers_out_of_every_range_are_refused(api: Api) -> None:
    agent_id = await api.register(["cat"])
    for version in (2**31, -(2**31) - 1, 2**63, 10**30):
        status, body, headers = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {},
                                                                        "version": version})
        assert_problem(status, body, headers, 404, 422)
    for path in (f"/v1/agents/{agent_id}/versions/{2**40}", f"/v1/agents/{agent_id}/versions/99999999999999999999",
                 "/v1/log/proof/inclusion?index=99999999999999999999&size=1",
                 "/v1/log/proof/consistency?from=1&to=99999999999999999999",
                 "/v1/executions?limit=99999999999999999999", "/v1/executions?limit=%C2%B2",
                 f"/v1/executions/{uuid.uuid4()}/receipt?tree_size=%C2%B2"):
        status, body, headers = await api.get(path)
        assert_problem(status, body, headers, 400, 404, 409, 422)


async def test_deep_nesting_in_a_request_is_refused(api: Api) -> None:
    agent_id = await api.register(["cat"], input_schema={
        "$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/n"}}})
    for depth in (300, 900, 100_000):
        text = f'{{"agent_id": "{agent_id}", "input": {{"x": {"[" * depth}{"]" * depth}}}}}'
        status, body, headers = await _raw_post(api, "/v1/executions", text)
        assert_problem(status, body, headers, 400, 422)
        schema = "[" * depth + "]" * depth
        text = (f'{{"name": "d-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest", "input_schema": '
                f'{{"default": {schema}}}, "output_schema": true}}')
        status, body, headers = await _raw_post(api, "/v1/agents", text)
        assert_problem(status, body, headers, 400, 422)


async def _raw_http(service: ServiceProcess, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request written byte for byte (clients refuse to send non-UTF-8 header values)."""
    url = urlsplit(service.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head_part, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head_part.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", b"Bearer exe_\xc3\x28", b"\xff Bearer x", b"Bearer \x80" * 10])
async def test_an_authorization_header_that_is_not_utf8_is_401(service: ServiceProcess, value: bytes) -> None:
    for path in (b"/v1/executions", b"/v1/agents"):
        status, headers, body = await _raw_http(
            service, b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + value
            + b"\r\nConnection: close\r\n\r\n")
        assert status in (400, 401), (status, body)
        assert headers["content-type"].startswith("application/problem+json"), headers
        assert json.loads(body)["status"] == status


@pytest.mark.parametrize("body", [{"names": [1, 2]}, {"names": [None]}, {"names": "busybox"}, {"names": [{"a": 1}]},
                                  {"names": []}, [], ["busybox"], "busybox", 3, None, {}, {"all": "yes"},
                                  {"all": False}, {"names": ["busybox"], "all": True}, {"nmes": ["busybox"]}])
async def test_a_malformed_build_request_builds_nothing(api: Api, body: Any) -> None:
    status, problem, headers = await api.post("/v1/images/build", json=body)
    assert_problem(status, problem, headers, 400, 422)


async def test_building_everything_is_an_explicit_request(api: Api) -> None:
    # Refused shapes above; `{"all": true}` is the explicit form (not run here: it builds every image).
    status, problem, _headers = await api.post("/v1/images/build", json={"names": ["busybox"]})
    assert status == 200 and [item["name"] for item in problem["items"]] == ["busybox"], problem


@pytest.mark.parametrize("ref", ["-1", "UPPER", "a b", "x:y:z", "..", "%C2%B2", "%2F",
                                 "a%2F..%2F..%2Fcontainers%2Fjson"])
async def test_an_image_reference_the_engine_calls_malformed_is_not_found(api: Api, ref: str) -> None:
    # Found by the fuzz test: the engine answers 400 to inspect a malformed reference.
    status, body, headers = await api.request("DELETE", f"/v1/images/{ref}")
    assert_problem(status, body, headers, 404)
    status, body, headers = await api.post("/v1/agents", json={
        "name": f"ref-{uuid.uuid4().hex[:8]}", "image": ref, "input_schema": True, "output_schema": True})
    assert_problem(status, body, headers, 422)


@pytest.mark.parametrize("role", [[], {}, ["user"], 1, None, True])
async def test_a_field_of_the_wrong_type_is_422_never_a_crash(api: Api, role: Any) -> None:
    # Found by the fuzz test: an unhashable value looked up in a set of names.
    status, body, headers = await api.post("/v1/tokens", json={"role": role, "subject": "s"})
    assert_problem(status, body, headers, 422)


@pytest.mark.parametrize("encoding, body, expected", [
    ("gzip", b"not gzip at all", 400), ("deflate", b"\x00\x01\x02garbage", 400), ("br", b"\x00\x01garbage", 400),
    ("zstd", b"{}", 400), ("gzip", gzip.compress(b"[" + b" " * (50 * 2**20) + b"]"), 413),
])
async def test_a_body_that_does_not_decode_is_a_problem(service: ServiceProcess, encoding: str, body: bytes,
                                                        expected: int) -> None:
    # A compression bomb stops at the body cap, counted after decoding; a body that does not
    # decode is a 400 problem, whether aiohttp's parser or our reader finds it out.
    headers = {"Authorization": f"Bearer {service.operator_token}", "Content-Type": "application/json",
               "Content-Encoding": encoding}
    async with (aiohttp.ClientSession(auto_decompress=False) as session,
                session.post(service.base_url + "/v1/executions", data=body, headers=headers) as response):
        problem = await response.json(content_type=None)
        assert response.status == expected, problem
        assert response.headers["Content-Type"].startswith("application/problem+json"), problem
        assert problem["status"] == expected and problem["type"].startswith(PROBLEM), problem


async def test_a_request_the_http_parser_refuses_is_a_problem_too(service: ServiceProcess) -> None:
    status, headers, body = await _raw_http(
        service, b"GET /v1/executions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer a\x00b\r\n"
                 b"Connection: close\r\n\r\n")
    assert status == 400 and headers["content-type"].startswith("application/problem+json"), (status, body)
    assert json.loads(body)["type"] == PROBLEM + "malformed_request"
