"""Unit tests of schema checks and violation reports (pure logic)."""

from __future__ import annotations

import pytest

from executor.errors import SchemaInvalid
from executor.schemas import check_schema, violations


def test_violations_carry_json_pointers_sorted() -> None:
    schema = {"type": "object", "properties": {"a/b": {"type": "integer"}, "list": {"items": {"type": "string"}}}}
    found = violations(schema, {"a/b": "x", "list": ["ok", 3]})
    assert [v["pointer"] for v in found] == ["/a~1b", "/list/1"]


def test_valid_instance_has_no_violations() -> None:
    assert violations({"type": "object"}, {}) == []


def test_local_refs_resolve() -> None:
    schema = {"$defs": {"n": {"type": "integer"}}, "properties": {"x": {"$ref": "#/$defs/n"}}}
    check_schema(schema, field="input_schema")
    assert [v["pointer"] for v in violations(schema, {"x": "no"})] == ["/x"]


def test_embedded_ids_resolve() -> None:
    schema = {"$id": "urn:example:root", "$defs": {"n": {"$id": "urn:example:n", "type": "integer"}},
              "properties": {"x": {"$ref": "urn:example:n"}}}
    check_schema(schema, field="input_schema")


@pytest.mark.parametrize("schema", [
    {"$ref": "https://example.com/remote.json"},
    {"properties": {"x": {"$ref": "other.json#/a"}}},
    {"$ref": "#/$defs/missing"},
    {"type": 5},
    [],
    {"$schema": "http://json-schema.org/draft-04/schema#"},
])
def test_bad_schemas_are_refused(schema) -> None:
    with pytest.raises(SchemaInvalid):
        check_schema(schema, field="input_schema")


def test_refs_inside_const_are_data() -> None:
    check_schema({"const": {"$ref": "https://example.com/not-a-ref"}}, field="output_schema")
