"""Request ids end to end (docs/logs.md): X-Request-Id taken when sane, made when absent or not,
returned on every answer (problems, unrouted paths and parser refusals too), named by a problem's
`instance`, written on the access log line (JSON fields) and on the worker's lines for the
execution the request submitted, carried there by the job."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from executor.api.access import AccessLog, accept_request_id, access_fields
from executor.api.auth import PRINCIPAL_KEY
from executor.api.problems import REQUEST_ID_KEY
from executor.queue.stream import JobQueue
from executor.records.principals import Principal, Role
from tests.api.test_hostile_requests import _raw_http
from tests.conftest import Api, ServiceProcess

MADE = re.compile(r"[0-9a-f]{32}")
INSTANCE = "urn:executor:request:"


def rid() -> str:
    return f"test-{uuid.uuid4()}"


# -- pure ------------------------------------------------------------------------------------

@pytest.mark.parametrize("given", [str(uuid.uuid4()), uuid.uuid4().hex, "abc", "a" * 128,
                                   "dGVzdC1pZA+/x==", "Root=1-5759e988;Parent=53995c3f;Sampled=1",
                                   "span:a.b~c_d@e!$&'()*,/f"])
def test_a_sane_request_id_is_kept(given: str) -> None:
    assert accept_request_id(given) == given


@pytest.mark.parametrize("given", [None, "", "a" * 129, "has space", "tab\there", "nul\x00", "esc\x1b[2J",
                                   "del\x7f", "caf\u00e9", '"quoted"', "<script>", "50%", "/leading-slash",
                                   "a\r\nX-Injected: 1", "x#frag", "x?q=1"])
def test_an_absent_or_insane_request_id_is_replaced(given: str | None) -> None:
    made = accept_request_id(given)
    assert MADE.fullmatch(made) and made != given
    assert accept_request_id(given) != made  # a new one each time


def test_the_access_fields_of_a_routed_request() -> None:
    app = web.Application()
    request = make_mocked_request("GET", "/v1/executions/abc?token=exe_secret", app=app,
                                  headers={"Authorization": "Bearer exe_secret"})
    route = web.RouteTableDef()

    @route.get("/v1/executions/{id}")
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_routes(route)
    match = asyncio.run(app.router.resolve(request))
    request._match_info = match  # as routing sets it
    request[REQUEST_ID_KEY] = "r-1"
    request[PRINCIPAL_KEY] = Principal(Role.USER, "alice")
    request_id, fields = access_fields(request, web.Response(status=201), 0.012345)
    assert request_id == "r-1"
    assert fields == {"method": "GET", "route": "/v1/executions/{id}", "path": "/v1/executions/abc",
                      "status": 201, "duration_ms": 12.35, "principal": "user:alice", "remote": None}
    assert "exe_secret" not in json.dumps(fields)


def test_the_access_fields_of_a_request_that_matched_nothing() -> None:
    request = make_mocked_request("POST", "/nowhere")
    request._match_info = None  # never routed: the parser refused it
    response = web.Response(status=400, headers={"X-Request-Id": "made-1"})
    request_id, fields = access_fields(request, response, 0.001)
    assert request_id == "made-1" and fields["route"] is None and fields["principal"] is None


def test_the_access_logger_writes_one_line_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    logger = logging.getLogger("test.access")
    request = make_mocked_request("GET", "/healthz")
    with caplog.at_level(logging.INFO, logger="test.access"):
        AccessLog(logger, "").log(request, web.Response(status=200), 0.002)
        AccessLog(logger, "").log(request, None, 0.002)  # type: ignore[arg-type]  # a broken answer: logged, not raised
    first = caplog.records[0]
    assert first.getMessage() == "GET /healthz 200" and first.fields["status"] == 200  # type: ignore[attr-defined]
    assert "could not write the access log line" in caplog.records[1].getMessage()


async def test_a_job_carries_its_request_id_and_jobs_without_one_still_run(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/15")
    queue = JobQueue(client, stream=f"test:jobs:{uuid.uuid4().hex}")
    try:
        await queue.ensure_group()
        with_id, without, many = uuid.uuid4(), uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
        await queue.enqueue(with_id, request_id="req-1")
        await queue.enqueue(without)
        await queue.enqueue_many(many, request_id="req-2")
        jobs = await queue.read("worker-a", count=10, block_ms=100)
        assert [(j.execution_id, j.request_id) for j in jobs] == \
            [(with_id, "req-1"), (without, None), (many[0], "req-2"), (many[1], "req-2")]
        reclaimed = await queue.reclaim("worker-b", min_idle_s=0, count=10)  # the id survives a takeover
        assert [(j.execution_id, j.request_id) for j in reclaimed] == [(j.execution_id, j.request_id) for j in jobs]
    finally:
        await client.delete(queue.stream)
        await client.aclose()


# -- live ------------------------------------------------------------------------------------

def log_lines(service: ServiceProcess) -> list[dict[str, Any]]:
    found = []
    for text in service.log_path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue  # a line the process wrote before its logging was set up
        if isinstance(line, dict):
            found.append(line)
    return found


async def lines_of(service: ServiceProcess, request_id: str, *, logger: str | None = None,
                   timeout: float = 10.0) -> list[dict[str, Any]]:
    """The service's log lines carrying this request id (from `logger`), once there is one."""
    for _ in range(int(timeout / 0.1)):
        found = [line for line in log_lines(service) if line.get("request_id") == request_id
                 and (logger is None or line["logger"] == logger)]
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no log line of {logger or 'any logger'} with request_id {request_id}")


async def test_a_sane_request_id_comes_back_and_is_on_the_access_line(api: Api, service: ServiceProcess) -> None:
    given = rid()
    status, body, headers = await api.get("/v1/executions?limit=1&status=COMPLETED", headers={"X-Request-Id": given})
    assert status == 200, body
    assert headers["X-Request-Id"] == given
    (line,) = await lines_of(service, given, logger="executor.access")
    assert line["level"] == "INFO" and line["instance"] == service.instance_id
    assert {k: line[k] for k in ("method", "route", "path", "status", "principal")} == {
        "method": "GET", "route": "/v1/executions", "path": "/v1/executions", "status": 200,
        "principal": "operator:" + line["principal"].split(":", 1)[1]}
    assert line["principal"].startswith("operator:") and line["remote"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
    assert "status=COMPLETED" not in json.dumps(line)  # never the query string
    assert service.operator_token not in service.log_path.read_text()


async def test_a_request_without_an_id_gets_a_new_one_each_time(api: Api) -> None:
    made = [(await api.get("/healthz"))[2]["X-Request-Id"] for _ in range(3)]
    assert all(MADE.fullmatch(one) for one in made) and len(set(made)) == 3


@pytest.mark.parametrize("hostile", ["x" * 129, "evil\x01id", "<img src=x>", "caf\u00e9"])
async def test_a_hostile_request_id_is_replaced(service: ServiceProcess, hostile: str) -> None:
    # Written byte for byte: clients refuse to send some of these.
    status, headers, _ = await _raw_http(service, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: "
                                         + hostile.encode() + b"\r\nConnection: close\r\n\r\n")
    assert status in (200, 400)  # a control character may be refused by the HTTP parser itself
    assert MADE.fullmatch(headers["x-request-id"]), headers


async def test_a_problem_names_its_request_as_instance(api: Api, service: ServiceProcess) -> None:
    given = rid()
    status, problem, headers = await api.get(f"/v1/agents/{uuid.uuid4()}", headers={"X-Request-Id": given})
    assert status == 404 and problem["type"] == "urn:executor:problem:not_found", problem
    assert headers["X-Request-Id"] == given and problem["instance"] == INSTANCE + given
    (line,) = await lines_of(service, given, logger="executor.access")
    assert line["status"] == 404 and line["route"] == "/v1/agents/{id}"
    # A made id too.
    status, problem, headers = await api.as_token(None).get("/v1/executions")
    assert status == 401 and problem["instance"] == INSTANCE + headers["X-Request-Id"], problem


@pytest.mark.parametrize("method, path, expected", [("GET", "/no/such/route", 404), ("DELETE", "/healthz", 405),
                                                    ("GET", "/v1/agents/x/y/z", 404)])
async def test_unrouted_answers_carry_the_id_too(api: Api, service: ServiceProcess, method: str, path: str,
                                                 expected: int) -> None:
    given = rid()
    status, problem, headers = await api.request(method, path, headers={"X-Request-Id": given})
    assert status == expected, problem
    assert headers["X-Request-Id"] == given and problem["instance"] == INSTANCE + given
    (line,) = await lines_of(service, given, logger="executor.access")
    assert line["status"] == expected and "route" not in line and line["path"] == path  # no route: no field


async def test_a_request_the_parser_refuses_gets_an_id_and_a_problem(service: ServiceProcess) -> None:
    status, headers, body = await _raw_http(service, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                            b"X-Bad: a\x00b\r\nConnection: close\r\n\r\n")
    assert status == 400
    made = headers["x-request-id"]
    assert MADE.fullmatch(made) and json.loads(body)["instance"] == INSTANCE + made
    (line,) = await lines_of(service, made, logger="executor.access")
    assert line["status"] == 400 and "route" not in line and "principal" not in line


async def test_the_worker_s_lines_for_an_execution_carry_the_request_id(api: Api, service: ServiceProcess) -> None:
    agent_id = await api.register(["cat"])
    given = rid()
    status, record, headers = await api.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {"a": 1}},
                                             headers={"X-Request-Id": given})
    assert status == 201 and record["status"] == "COMPLETED", record
    assert headers["X-Request-Id"] == given
    # The worker task is none of the request's: only the job could have told it the id.
    lines = await lines_of(service, given, logger="executor.executions.finish")
    assert [line["execution_id"] for line in lines] == [record["id"]]
    assert "COMPLETED" in lines[0]["message"]
    assert [line["status"] for line in await lines_of(service, given, logger="executor.access")] == [201]
