"""The response checker the whole suite runs under (EXECUTOR_CHECK_RESPONSES): each way an answer
can leave the contract is caught. Pure: no service."""

from __future__ import annotations

import json

from executor.api.contract import openapi
from executor.api.contract.operation import Operation
from executor.api.response_check import violations

PROBLEM = "application/problem+json"


def operation(method: str, path: str) -> Operation:
    return next(op for op in openapi.operations() if (op.method, op.path) == (method, path))


def problem(slug: str, status: int) -> bytes:
    return json.dumps({"type": f"urn:executor:problem:{slug}", "title": "t", "status": status,
                       "detail": "d"}).encode()


def test_an_answer_as_documented_passes() -> None:
    health = operation("GET", "/healthz")
    assert violations(health, 200, "application/json", b'{"status": "ok"}') == []


def test_an_undocumented_status_is_caught() -> None:
    health = operation("GET", "/healthz")
    assert "not documented" in violations(health, 201, "application/json", b'{"status": "ok"}')[0]


def test_another_media_type_is_caught() -> None:
    health = operation("GET", "/healthz")
    assert "media type" in violations(health, 200, "text/plain", b"ok")[0]


def test_a_body_outside_its_schema_is_caught() -> None:
    page = operation("GET", "/v1/agents")
    found = violations(page, 200, "application/json", b'{"items": [{"id": 5}], "surprise": true}')
    assert found and all(reason.startswith("/") for reason in found)
    assert violations(page, 200, "application/json", b"not json") == ["the body is not JSON"]


def test_a_problem_the_operation_does_not_list_is_caught() -> None:
    health = operation("GET", "/healthz")
    assert "not listed" in violations(health, 410, PROBLEM, problem("agent_version_withdrawn", 410))[0]


def test_a_problem_with_another_status_than_its_type_is_caught() -> None:
    get = operation("GET", "/v1/agents/{id}")
    assert violations(get, 404, PROBLEM, problem("not_found", 404)) == []
    assert "documented 404" in violations(get, 400, PROBLEM, problem("not_found", 400))[0]


def test_an_error_not_as_a_problem_is_caught() -> None:
    get = operation("GET", "/v1/agents/{id}")
    assert "not application/problem+json" in violations(get, 404, "text/plain", b"404: Not Found")[0]


def test_a_problem_type_outside_the_contract_is_caught() -> None:
    get = operation("GET", "/v1/agents/{id}")
    assert "not in the contract" in violations(get, 500, PROBLEM, problem("internal_error", 500))[0]


def test_a_request_that_matched_no_route_may_only_be_told_so() -> None:
    assert violations(None, 404, PROBLEM, problem("not_found", 404)) == []
    assert violations(None, 401, PROBLEM, problem("unauthenticated", 401)) == []
    assert violations(None, 422, PROBLEM, problem("request_invalid", 422)) != []
    assert violations(None, 200, "application/json", b"{}") != []


def test_an_error_status_the_operation_documents_as_a_reply_is_checked_as_one() -> None:
    ready = operation("GET", "/readyz")
    unready = b'{"status": "unavailable", "checks": {"postgresql": "down", "redis": "ok", "docker": "ok"}}'
    assert violations(ready, 503, "application/json", unready) == []
    assert violations(ready, 503, "application/json", b'{"status": 1}') != []
