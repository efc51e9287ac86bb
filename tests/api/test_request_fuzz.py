"""Fuzzing the request side (issue 15, family 14): random bodies, parameters and headers on every
route the API serves; the answer is never a 5xx, and every error is application/problem+json with
a stable type.

The routes come from the app's own route tables, so a new route is fuzzed without touching this
file. Bodies are random JSON, texts that Python's json module reads but JSON does not allow, raw
bytes, and, most useful, a valid body of the route with one field replaced by random JSON (type
confusion in known fields). Bounded: a fixed number of examples and a wall-clock budget.

CI runs the same examples every time (derandomized), so a red run is reproducible; to explore,
set EXECUTOR_FUZZ_RANDOM=1 (and EXECUTOR_FUZZ_EXAMPLES=N) and fix what it finds as a class,
with a deterministic test beside the family's others.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.api.app import API_ROUTES, health
from executor.api.observe import routes as observe_routes
from tests.conftest import ServiceProcess, make_service

BUDGET_S = 150.0  # the whole fuzz run, whatever the number of examples
PROBLEM_PREFIX = "urn:executor:problem:"


def served_routes() -> list[tuple[str, str]]:
    tables = (health, observe_routes, *API_ROUTES)
    return sorted({(route.method, route.path) for table in tables for route in table})  # type: ignore[attr-defined]


ROUTES = served_routes()


@pytest.fixture(scope="module")
def fuzzed(postgres, redis_server, images) -> Iterator[dict[str, Any]]:
    """A service of its own (the fuzz creates tokens, agents, webhooks), with an agent, a final
    execution and tokens of each role to aim at."""
    svc: ServiceProcess = make_service(postgres, redis_server, "fuzz", redis_db="12", user_burst="100000",
                                       user_rate_per_s="100000", service_burst="100000",
                                       service_rate_per_s="100000", max_wait_s="10")
    svc.start()
    try:
        session = requests.Session()
        operator = {"Authorization": f"Bearer {svc.operator_token}"}

        def post(path: str, body: Any, headers: dict[str, str] = operator) -> Any:
            response = session.post(svc.base_url + path, json=body, headers=headers, timeout=60)
            assert response.status_code in (200, 201), response.text
            return response.json()

        tokens = {role: post("/v1/tokens", {"role": role, "subject": f"fuzz-{role}"})["token"]
                  for role in ("user", "service")}
        agent = post("/v1/agents", {"name": "fuzz-cat", "image": "executor/busybox:latest", "command": ["cat"],
                                    "input_schema": {"type": "object"}, "output_schema": True})
        execution = post("/v1/executions?wait=5", {"agent_id": agent["id"], "input": {"a": 1}})
        assert execution["status"] == "COMPLETED", execution
        yield {"svc": svc, "session": session, "tokens": {"operator": svc.operator_token, **tokens},
               "agent_id": agent["id"], "execution_id": execution["id"], "started": time.monotonic()}
    finally:
        svc.stop()


def valid_bodies(agent_id: str, execution_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """One accepted body per route that takes one: the fuzz replaces, drops or adds its fields."""
    return {
        ("POST", "/v1/executions"): {"agent_id": agent_id, "input": {"a": 1}, "version": 1,
                                     "limits": {"memory_mb": 64, "cpus": 0.5, "pids": 16, "timeout_s": 5}},
        ("POST", "/v1/agents"): {"name": f"fz-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest",
                                 "command": ["cat"], "input_schema": {"type": "object"}, "output_schema": True,
                                 "limits": {"memory_mb": 64}, "pool": {"min": 0, "max": 0},
                                 "pricing": {"currency": "EUR", "decimals": 2, "per_call": 1}},
        ("POST", "/v1/agents/{id}/versions"): {"image": "executor/busybox:latest", "command": ["cat"],
                                               "input_schema": True, "output_schema": True},
        ("PUT", "/v1/entitlements"): {"user": "fuzz-user", "agent_id": agent_id, "uses": 3,
                                      "expires_at": "2030-01-01T00:00:00Z"},
        ("POST", "/v1/tokens"): {"role": "user", "subject": "fuzz-someone"},
        ("PUT", "/v1/webhooks/endpoint"): {"url": "https://example.invalid/hooks"},
        ("POST", "/v1/receipts/verify"): {"receipt": {"envelope": {}, "inclusion_proof": {}, "tree_head": {}},
                                          "input_base64": "e30="},
        ("POST", "/v1/executions/{id}/receipt/attestations"): {"keyid": "k", "sig": "AA==",
                                                               "public_key": "AA=="},
        # Never {"all": true}: that builds every image (minutes); the fuzz stays on refusals.
        ("POST", "/v1/images/build"): {"names": ["no-such-image"]},
    }


json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**31 - 2, max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
# Texts Python's json reads that JSON does not allow, or that no later step can hold.
hostile_texts = st.sampled_from([
    '{"x": NaN}', "[Infinity]", '{"a": -Infinity}', '{"x": 1e400}', "9" * 5000, '"\\u0000"', '{"\\ud800": 1}',
    "[" * 5000 + "]" * 5000, "[" * 70 + "]" * 70, '{"a": 1', "", "null", '"just a string"', "\ufeff{}",
])
# Path parameters: a real id, another uuid, random text, numbers, bytes that are not UTF-8.
path_values = (st.sampled_from(["$real", str(uuid.UUID(int=0)), "1", "0", "-1", "99999999999999999999", "%C2%B2",
                                "%ff%fe", "%00", "..", "%2F"])
               | st.text(min_size=1, max_size=12).map(lambda t: quote(t, safe="")))
query_names = st.sampled_from(["limit", "wait", "cursor", "status", "agent_id", "user", "index", "size", "from", "to",
                               "tree_size", "version", "x"])
query_values = (st.sampled_from(["", "0", "-1", "1e400", "nan", "inf", "99999999999999999999", "²", "%00", "%ff",
                                 "RUNNING", "COMPLETED"])
                | st.text(max_size=10) | st.integers().map(str))
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


@st.composite
def requests_to_send(draw: st.DrawFn, ids: dict[str, str]) -> dict[str, Any]:
    method, template = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 19)) == 0:  # now and then a method the route does not have
        method = draw(st.sampled_from(["PATCH", "DELETE", "PUT", "POST", "GET"]))
    path = template
    for name in ("{id}", "{version}", "{ref:.+}"):
        if name in path:
            value = draw(path_values)
            if value == "$real":
                value = {"{id}": ids["execution_id"] if "/executions/" in template else ids["agent_id"],
                         "{version}": "1", "{ref:.+}": "no-such-image"}[name]
            if name == "{ref:.+}" and "executor" in value:
                value = "no-such-image"  # never delete a real image
            path = path.replace(name, value)
    query = draw(st.lists(st.tuples(query_names, query_values), max_size=3))
    suffix = "&".join(f"{quote(k)}={v if '%' in v else quote(v)}" for k, v in query)
    headers = {}
    role = draw(st.sampled_from(["operator", "service", "user", "junk", "none"]))
    if role == "junk":
        headers["Authorization"] = draw(st.sampled_from(["Bearer ", "Basic abc", "Bearer exe_x", "bearer"])
                                        | header_text)
    elif role != "none":
        headers["Authorization"] = f"Bearer {ids['tokens'][role]}"
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(header_text | st.sampled_from(["", "k" * 300]))
    if draw(st.integers(0, 4)) == 0:
        headers["Last-Event-ID"] = draw(header_text)
    body: bytes | None = None
    if method in ("POST", "PUT"):
        valid = ids["bodies"].get((method, template))
        kind = draw(st.sampled_from(["mutated", "mutated", "random", "hostile", "bytes", "none"]))
        if kind == "mutated" and valid is not None:
            document = json.loads(json.dumps(valid))
            field = draw(st.sampled_from(sorted(document) + ["extra"]))
            target = document
            if isinstance(document.get(field), dict) and document[field] and draw(st.booleans()):
                target, field = document[field], draw(st.sampled_from(sorted(document[field])))  # one level down
            if draw(st.booleans()):
                target[field] = draw(json_values)
            else:
                target.pop(field, None)
            if template == "/v1/images/build" and document.get("all") is True:
                document["all"] = False
            body = json.dumps(document).encode()
        elif kind in ("mutated", "random"):
            document = draw(json_values)
            if template == "/v1/images/build" and isinstance(document, dict) and document.get("all") is True:
                document["all"] = False
            body = json.dumps(document).encode()
        elif kind == "hostile":
            body = draw(hostile_texts).encode()
        elif kind == "bytes":
            body = draw(st.binary(max_size=64))
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", "application/wasm"]))
    return {"method": method, "template": template, "url": path + (f"?{suffix}" if suffix else ""),
            "headers": headers, "body": body}


def test_no_request_gets_a_5xx_and_every_error_is_a_problem(fuzzed: dict[str, Any]) -> None:
    ids = {"agent_id": fuzzed["agent_id"], "execution_id": fuzzed["execution_id"], "tokens": fuzzed["tokens"],
           "bodies": valid_bodies(fuzzed["agent_id"], fuzzed["execution_id"])}
    svc: ServiceProcess = fuzzed["svc"]
    session: requests.Session = fuzzed["session"]
    seen: dict[int, int] = {}
    routes_hit: set[str] = set()

    @settings(max_examples=int(os.environ.get("EXECUTOR_FUZZ_EXAMPLES", "1500")), deadline=None, database=None,
              derandomize=not os.environ.get("EXECUTOR_FUZZ_RANDOM"),
              suppress_health_check=list(HealthCheck))
    @given(request=requests_to_send(ids))
    def one_request(request: dict[str, Any]) -> None:
        if time.monotonic() - fuzzed["started"] > BUDGET_S:
            return  # the budget is spent: the remaining examples send nothing
        response = session.request(request["method"], svc.base_url + request["url"], headers=request["headers"],
                                   data=request["body"], timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        routes_hit.add(request["template"])
        described = f"{request['method']} {request['url']} {request['headers']} {request['body']!r:.300}"
        assert response.status_code < 500, f"{described} -> {response.status_code} {response.text[:500]}"
        if response.status_code >= 400:
            kind = response.headers.get("Content-Type", "")
            assert kind.startswith("application/problem+json"), f"{described} -> {kind} {response.text[:300]}"
            problem = response.json()
            assert problem["type"].startswith(PROBLEM_PREFIX) and problem["status"] == response.status_code, problem

    one_request()
    print(f"fuzz: {sum(seen.values())} requests on {len(routes_hit)} of {len({p for _, p in ROUTES})} paths,"
          f" statuses {dict(sorted(seen.items()))}")
    assert len(routes_hit) >= 0.9 * len({p for _, p in ROUTES}), sorted(routes_hit)
    assert sum(seen.values()) >= 300, f"the fuzz sent too few requests to mean anything: {seen}"
    assert any(400 <= status < 500 for status in seen) and any(status < 300 for status in seen), seen
