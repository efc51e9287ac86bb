"""The API contract, fuzzed against the live service by Schemathesis: every operation of
GET /v1/openapi.json, with an operator's token, in positive and negative modes; the run fails on a
server error, an undocumented status, a media type, body or header the document does not describe.

The service is one of its own (fuzzed objects must not disturb other tests), seeded with real
objects that contract_fuzz_hooks.py aims path parameters at. It builds nothing and removes
nothing of the shared engine: its images folder is empty (POST /v1/images/build has nothing to
build), and the hooks keep DELETE /v1/images/{ref} to a repository no one has or to the seeded
image, which an agent version pins (409). Webhook URLs may name 127.0.0.1 only.

Bounded: a fixed number of examples per operation, a fixed seed (CI runs the same cases every
time), and a hard timeout on the subprocess. The run's summary is printed and written to
$EXECUTOR_FUZZ_REPORT when set (.ci/run prints it at the end), else under pytest's tmp dir.
To explore: EXECUTOR_FUZZ_EXAMPLES=N, EXECUTOR_FUZZ_SEED=S, EXECUTOR_FUZZ_TIMEOUT_S=T, and
EXECUTOR_FUZZ_CHECKS=a,b (a comma-separated list of Schemathesis checks, instead of CHECKS).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from executor.api.contract import openapi
from executor.api.validation import contract_validator
from executor.embedded import free_port
from tests.conftest import ServiceProcess, make_service, private_tmpdir

HOOKS = Path(__file__).with_name("contract_fuzz_hooks.py")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# The schemathesis subprocess, hard; with the service's start and seeding, under 4 minutes. The
# default run takes about 45 s.
TIMEOUT_S = float(os.environ.get("EXECUTOR_FUZZ_TIMEOUT_S", "210"))
# Every check Schemathesis has but one: positive_data_acceptance expects every schema-valid
# request to succeed, which no document can promise here: cursors are opaque ("a cursor this service
# gave"), ?wait is capped by EXECUTOR_MAX_WAIT_S, log proofs need sizes within the log, an agent's
# input must fit its own schema, and an Idempotency-Key is bound to its first body.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
          "missing_required_header", "unsupported_method", "ignored_auth", "use_after_free",
          "ensure_resource_availability", "allow_header_conformance")


@pytest.fixture(scope="module")
def fuzz_service(postgres, redis_server, images) -> Iterator[tuple[ServiceProcess, dict[str, str]]]:
    """A service of its own, seeded: an agent on executor/busybox:latest (its image pinned: DELETE
    answers 409) and a WASM agent without a module yet, a final execution, an entitlement, a spare
    service token and a webhook endpoint on a closed local port."""
    svc = make_service(
        postgres, redis_server, "contract_fuzz", redis_db="11", images_dir=str(private_tmpdir("executor-fuzz-images-")),
        user_burst="100000", user_rate_per_s="100000", service_burst="100000", service_rate_per_s="100000",
        max_live_per_user="0", max_wait_s="2", pool_enabled="false", worker_concurrency="4",
        webhook_allowed_hosts="127.0.0.1", webhook_allow_private="true", webhook_max_attempts="1",
    )
    svc.start()
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {svc.operator_token}"

        def call(method: str, path: str, body: Any) -> Any:
            response = session.request(method, svc.base_url + path, json=body, timeout=60)
            assert response.status_code in (200, 201), response.text
            return response.json()

        user = call("POST", "/v1/tokens", {"role": "user", "subject": "fuzz-user"})
        spare = call("POST", "/v1/tokens", {"role": "service", "subject": "fuzz-spare"})
        agent = call("POST", "/v1/agents", {"name": "fuzz-cat", "image": "executor/busybox:latest",
                                            "command": ["cat"], "input_schema": {"type": "object"},
                                            "output_schema": True})
        wasm = call("POST", "/v1/agents", {"name": "fuzz-wasm", "kind": "wasm", "input_schema": {"type": "object"},
                                           "output_schema": True})
        execution = call("POST", "/v1/executions?wait=2", {"agent_id": agent["id"], "input": {"a": 1}})
        for _ in range(100):
            if execution["status"] not in ("PENDING", "RUNNING"):
                break
            time.sleep(0.1)
            execution = call("GET", f"/v1/executions/{execution['id']}", None)
        assert execution["status"] == "COMPLETED", execution
        entitlement = call("PUT", "/v1/entitlements", {"user": user["subject"], "agent_id": agent["id"]})
        call("PUT", "/v1/webhooks/endpoint", {"url": f"http://127.0.0.1:{free_port()}/hooks"})
        (own,) = call("GET", "/v1/tokens?subject=bootstrap", None)["items"]  # the fuzz's own: never revoked
        yield svc, {"agent_id": agent["id"], "wasm_agent_id": wasm["id"], "execution_id": execution["id"],
                    "entitlement_id": entitlement["id"], "token_id": spare["id"], "own_token_id": own["id"],
                    "image_ref": "executor/busybox:latest"}
    finally:
        svc.stop()


def summary_of(output: str) -> str:
    """The run's closing summary (from schemathesis' SUMMARY rule on), or the whole output."""
    match = re.search(r"^=+ ?SUMMARY ?=+$", output, re.MULTILINE)
    return output[match.start():] if match else output


def test_the_live_service_keeps_its_contract(fuzz_service, tmp_path) -> None:
    svc, seeds = fuzz_service
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECUTOR_", "SCHEMATHESIS_"))}
    env.update(SCHEMATHESIS_HOOKS=str(HOOKS), FUZZ_SEEDS=json.dumps(seeds), NO_COLOR="1", COLUMNS="120")
    argv = [
        str(SCHEMATHESIS), "run", f"{svc.base_url}/v1/openapi.json",
        "--header", f"Authorization: Bearer {svc.operator_token}",
        "--checks", os.environ.get("EXECUTOR_FUZZ_CHECKS", ",".join(CHECKS)),
        # The operator's token on every request: generating the bearer header instead would make
        # nearly every case a 401 and leave the operations untested.
        "--generation-with-security-parameters", "false",
        "--mode", "all",  # schema-valid requests and invalid ones (negative_data_rejection)
        "--max-examples", os.environ.get("EXECUTOR_FUZZ_EXAMPLES", "100"),
        "--seed", os.environ.get("EXECUTOR_FUZZ_SEED", "20240601"),
        # One worker: on CPython 3.11.7 Hypothesis' lambda descriptions (ast.parse) in several
        # threads at once fail with "AST constructor recursion depth mismatch" (a CPython bug).
        "--workers", "1",
        "--request-timeout", "20",
        "--generation-database", "none",
        "--continue-on-failure",
        "--no-color",
    ]
    reports = ["--report", "junit", "--report-dir", str(tmp_path / "schemathesis")]
    started = time.monotonic()
    try:
        # In tmp_path: schemathesis keeps its replay cache (.schemathesis/) in the working directory.
        run = subprocess.run(argv + reports, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        output, code = run.stdout + run.stderr, run.returncode
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        output, code = partial + f"\n(killed after {TIMEOUT_S:.0f} s)", -1
    shown = " ".join("Authorization: Bearer [operator token]" if arg.startswith("Authorization:") else arg
                     for arg in argv[3:])
    summary = (f"schemathesis against {svc.base_url} ({time.monotonic() - started:.0f} s, exit {code})\n"
               f"options: {shown}\n")
    summary += summary_of(output)
    report = Path(os.environ.get("EXECUTOR_FUZZ_REPORT") or tmp_path / "schemathesis-summary.txt")
    report.write_text(summary)
    (tmp_path / "schemathesis-output.txt").write_text(output)
    print(summary)
    assert code == 0, output[-20000:]


# Regressions for what the fuzz found, one per class of defect (pure: the document against answers
# the service gives; the live checks are the fuzz above and response_check.py).

def _reply_schema(operation_id: str, status: int) -> dict[str, Any]:
    op = next(op for op in openapi.operations() if op.operation_id == operation_id)
    reply = next(reply for reply in op.replies if reply.status == status)
    assert reply.schema is not None
    return reply.schema


def test_the_event_stream_schema_describes_each_event_as_openapi_3_1_tools_read_it() -> None:
    """Without OpenAPI 3.2's `itemSchema`, a text/event-stream `schema` describes one event, read as
    an object of its fields (data, event, id, retry): the document said a string, which no event is."""
    schema = _reply_schema("streamExecutionEvents", 200)
    record = {"id": "7627b4ab-0056-448d-a9ec-757390255542", "status": "COMPLETED"}
    for event in ({"id": "1", "event": "status", "data": json.dumps(record)},
                  {"id": "2", "event": "final", "data": json.dumps(record)}):
        contract_validator(schema).validate(event)
    assert not contract_validator(schema).is_valid("id: 1\nevent: final\ndata: {}")
