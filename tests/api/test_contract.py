"""The OpenAPI document against itself and against the app: no engine, no database.

The live side (every response the end-to-end suite receives validates against the document,
and schemathesis fuzzes the running service) is in tests/conftest.py and .ci/run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from executor.api.app import make_app
from executor.api.auth import PUBLIC_PATHS
from executor.api.contract import openapi
from executor.api.reference import render_page
from executor.api.validation import body_violations, checked_operations
from executor.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    root = {"$ref": "#/$defs/s", "$defs": {"s": schema}, "components": openapi.document()["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on the first error
    json.dumps(document)  # serves as JSON


def test_the_routes_the_app_serves_are_the_operations_of_the_document() -> None:
    services = dict.fromkeys(("tokens", "agents", "entitlements", "executions", "images", "receipts",
                              "webhook_endpoints", "replays", "secrets", "instance_id", "pool", "queue"))
    app = make_app(SimpleNamespace(settings=load_settings({}), **services))  # type: ignore[arg-type]
    served = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):  # HEAD comes with every GET
            continue
        canonical = route.resource.canonical if route.resource is not None else None
        served.add((route.method, canonical))
    documented = {(op.method, op.path) for op in openapi.operations()}
    assert served - documented == set(), "served but not in the document"
    assert documented - served == set(), "in the document but not served"


def test_operation_ids_are_unique_and_every_reference_resolves() -> None:
    ids = [op.operation_id for op in openapi.operations()]
    assert len(ids) == len(set(ids))
    names = set(openapi.schemas())
    text = json.dumps(openapi.document())
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in names, ref


def test_public_operations_are_the_ones_that_need_no_token() -> None:
    public = {op.path for op in openapi.operations() if op.roles is None}
    assert public <= PUBLIC_PATHS
    for op in openapi.operations():
        answers = openapi.document()["paths"][op.path][op.method.lower()]["responses"]
        assert ("401" in answers) == (op.roles is not None), op.operation_id


@pytest.mark.parametrize("op", [op for op in openapi.operations() if op.examples], ids=lambda op: op.operation_id)
def test_every_example_in_the_document_validates_against_its_schema(op: Any) -> None:
    assert op.body is not None
    for name, example in op.examples.items():
        errors = list(_validator(op.body).iter_errors(example))
        assert errors == [], f"{op.operation_id} example {name!r}: {[e.message for e in errors]}"


def test_every_problem_an_operation_names_has_a_status() -> None:
    statuses = openapi.problem_statuses()
    for op in openapi.operations():
        for slug in openapi.problem_slugs(op):
            assert slug in statuses, f"{op.operation_id}: unknown problem {slug!r}"


def test_each_problem_reply_lists_its_slugs_for_generated_clients() -> None:
    """`x-problem-types` on every problem reply: the slugs the SDKs turn into typed errors."""
    statuses = openapi.problem_statuses()
    for path, methods in openapi.document()["paths"].items():
        for method, operation in methods.items():
            for status, reply in operation["responses"].items():
                if "application/problem+json" not in reply.get("content", {}):
                    continue
                slugs = reply["x-problem-types"]
                assert slugs and all(statuses[slug] == int(status) for slug in slugs), (method, path, status)


def test_the_clients_snapshot_is_the_document() -> None:
    """clients/openapi.json, which both SDKs are generated from, is the served document. After a
    contract change: `scripts/openapi-snapshot`, then regenerate the SDKs (clients/README.md)."""
    snapshot = json.loads((REPO / "clients" / "openapi.json").read_text())
    assert snapshot == json.loads(json.dumps(openapi.document())), "run scripts/openapi-snapshot"


def test_every_example_in_readme_validates() -> None:
    """README's JSON examples each follow a `<!-- contract: SchemaName -->` line naming the schema they show."""
    readme = (REPO / "README.md").read_text()
    examples = re.findall(r"<!-- contract: (\w+) -->\s*```json\n(.*?)```", readme, re.S)
    assert examples, "README.md shows no example marked with the schema it is an instance of"
    for name, text in examples:
        assert name in openapi.schemas(), name
        errors = list(_validator({"$ref": f"#/components/schemas/{name}"}).iter_errors(json.loads(text)))
        assert errors == [], f"README example of {name}: {[e.message for e in errors]}"


def test_the_page_lists_every_operation_and_loads_nothing_from_elsewhere() -> None:
    page = render_page()
    for op in openapi.operations():
        assert f'id="{op.operation_id}"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page.replace(
        "https://json-schema.org", "")


@pytest.mark.parametrize("body, pointer", [
    ({"agent_id": 1, "input": {}}, "/agent_id"), ({"agent_id": "a"}, "/input"),
    ({"agent_id": "a", "input": {}, "version": True}, "/version"),
    ({"agent_id": "a", "input": {}, "on_behalf_of": ""}, "/on_behalf_of"),
    ({"agent_id": "a", "input": {}, "webhook_url": 5}, "/webhook_url"),
    ({"agent_id": "a", "input": {}, "surprise": 1}, "/surprise"),
])
def test_bad_submissions(body: dict, pointer: str) -> None:
    """The submission's shape is the contract's SubmitExecution: each violation names where it is."""
    violations = body_violations(checked_operations()[("POST", "/v1/executions")], body)
    assert violations and violations[0]["pointer"] == pointer


def test_every_problem_type_is_in_the_errors_doc() -> None:
    listed = (REPO / "docs" / "errors.md").read_text()
    missing = [slug for slug in openapi.problem_statuses() if f"| `{slug}` |" not in listed]
    assert missing == [], f"docs/errors.md does not list {missing}"
