"""Unit tests of schema checks and violation reports (pure logic)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from executor.errors import SchemaInvalid
from executor.schemas import check_schema, violations, violations_off_loop


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


# --- Patterns: ECMA-262 semantics on a linear-time engine (RE2), refused at registration when
# they need backtracking features. Every pointer is relative to the request body.

@pytest.mark.parametrize("schema, pointer", [
    ({"pattern": "(a)\\1"}, "/input_schema/pattern"),
    ({"properties": {"x": {"pattern": "(?=a)b"}}}, "/input_schema/properties/x/pattern"),
    ({"$defs": {"d": {"pattern": "(?<=a)b"}}}, "/input_schema/$defs/d/pattern"),
    ({"patternProperties": {"(a)\\1": {}}}, "/input_schema/patternProperties/(a)\\1"),
    ({"patternProperties": {"^x/y": {"pattern": "(?!x)"}}}, "/input_schema/patternProperties/^x~1y/pattern"),
    ({"propertyNames": {"pattern": "(?!x)"}}, "/input_schema/propertyNames/pattern"),
    ({"contains": {"pattern": "\\k<n>(?<n>a)"}}, "/input_schema/contains/pattern"),
    ({"items": {"patternProperties": {"^a": {"pattern": "(?=.)"}}}},
     "/input_schema/items/patternProperties/^a/pattern"),
    ({"anyOf": [{}, {"not": {"pattern": "(a)\\1"}}]}, "/input_schema/anyOf/1/not/pattern"),
    ({"pattern": "a{2000}"}, "/input_schema/pattern"),  # RE2 caps a repetition at 1000
    ({"pattern": "a++"}, "/input_schema/pattern"),  # not ECMA either
])
def test_patterns_a_linear_engine_cannot_run_are_refused_with_their_pointer(schema, pointer) -> None:
    with pytest.raises(SchemaInvalid) as raised:
        check_schema(schema, field="input_schema")
    assert raised.value.errors and raised.value.errors[0]["pointer"] == pointer, raised.value.errors
    assert "RE2" in raised.value.errors[0]["detail"], raised.value.errors


@pytest.mark.parametrize("pattern", ["^(a+)+$", "^\\d{3}-\\u0041$", "(?<year>\\d{4})", "\\p{L}+", "^\\/x\\cJ$"])
def test_patterns_re2_runs_are_accepted(pattern) -> None:
    check_schema({"properties": {"s": {"pattern": pattern}}, "patternProperties": {pattern: {}}}, field="input_schema")


@pytest.mark.parametrize("pattern, text, matches", [
    ("b", "abc", True),  # unanchored: a search, not a match
    ("^a$", "a\n", False),  # ECMA's $ is the end of input (Python's re would match before a final newline)
    ("^\\u0041\\u00e9$", "A\u00e9", True),
    ("^\\uD83D\\uDE00$", "\U0001F600", True),  # a surrogate pair is one code point
    ("^.$", "\r", False),  # ECMA's . excludes every line terminator
    ("^.$", "\u2028", False),
    ("^.$", "\u00e9", True),
    ("^\\s$", "\u00a0", True),  # ECMA's \s is Unicode white space
    ("^\\S$", "\u00a0", False),
    ("^[\\s]$", "\u3000", True),
    ("^\\d$", "\u0663", False),  # ECMA's \d is ASCII only
    ("^\\w+$", "caf\u00e9", False),
    ("^\\cJ$", "\n", True),
    ("^\\\\u0041$", "\\u0041", True),  # an escaped backslash, then a plain u
    ("^[\\u0041-\\u0043]+$", "ABC", True),
    ("^[^]$", "\n", True),  # ECMA: [^] is any character, [] none
    ("^[]?$", "", True),
    ("[]", "", False),
    ("^[\\b]$", "\b", True),  # a backspace inside a class
])
def test_patterns_follow_ecma_262(pattern, text, matches) -> None:
    schema = {"type": "string", "pattern": pattern}
    check_schema(schema, field="input_schema")
    assert (violations(schema, text) == []) is matches


def test_patterns_of_property_names_follow_ecma_262_everywhere() -> None:
    schema = {"patternProperties": {"^a$": True}, "additionalProperties": False}
    assert [v["pointer"] for v in violations(schema, {"a\n": 1, "a": 2})] == [""]
    schema = {"patternProperties": {"^a$": True}, "unevaluatedProperties": False}
    assert [v["pointer"] for v in violations(schema, {"a\n": 1, "a": 2})] == [""]
    schema = {"patternProperties": {"^a$": {"type": "integer"}}}
    assert [v["pointer"] for v in violations(schema, {"a": "x", "a\n": "y"})] == ["/a"]


def test_lone_surrogates_in_instances_do_not_break_patterns() -> None:
    assert violations({"pattern": "^a"}, "a\ud800") == []
    assert len(violations({"pattern": "^b"}, "a\ud800")) == 1


def _bounded(code: str, timeout: float = 60.0) -> str:
    """Run `code` in a fresh interpreter, killed after `timeout` s: a backtracking regex holds
    the GIL, so a thread could not be abandoned. Returns what it printed."""
    try:
        done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                              timeout=timeout, cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still validating after {timeout} s: {code}") from None
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("schema, instance, count", [
    ({"type": "string", "pattern": "^(a+)+$"}, "'a' * 60 + '!'", 1),
    ({"patternProperties": {"^(a+)+$": {"type": "integer"}}}, "{'a' * 60 + '!': 'x'}", 0),  # no match: not applied
    ({"patternProperties": {"^(a+)+$": True}, "additionalProperties": False}, "{'a' * 60 + '!': 1}", 1),
    ({"patternProperties": {"^(a+)+$": True}, "unevaluatedProperties": False}, "{'a' * 60 + '!': 1}", 1),
    ({"propertyNames": {"pattern": "^(a+)+$"}}, "{'a' * 60 + '!': 1}", 1),
])
def test_catastrophic_patterns_run_in_linear_time(schema, instance, count) -> None:
    out = _bounded(f"from executor.schemas import violations; print(len(violations({schema!r}, {instance})))")
    assert out == str(count)


# --- References that apply to the same instance without consuming it never terminate: refused.

@pytest.mark.parametrize("schema, pointer", [
    ({"$ref": "#"}, "/input_schema/$ref"),
    ({"anyOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"$ref": "#"}}}, "/input_schema/$defs/a/$ref"),
    ({"allOf": [{"$ref": "#"}]}, "/input_schema/allOf/0/$ref"),
    ({"oneOf": [{"type": "string"}, {"$ref": "#"}]}, "/input_schema/oneOf/1/$ref"),
    ({"not": {"$ref": "#"}}, "/input_schema/not/$ref"),
    ({"if": {"$ref": "#"}}, "/input_schema/if/$ref"),
    ({"if": True, "then": {"$ref": "#"}}, "/input_schema/then/$ref"),
    ({"if": False, "else": {"allOf": [{"$ref": "#"}]}}, "/input_schema/else/allOf/0/$ref"),
    ({"dependentSchemas": {"a": {"$ref": "#"}}}, "/input_schema/dependentSchemas/a/$ref"),
    ({"$defs": {"a": {"$ref": "#/$defs/a"}}}, "/input_schema/$defs/a/$ref"),  # never used: refused all the same
    ({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"oneOf": [{"$ref": "#/$defs/a"}]}}},
     "/input_schema/$defs/b/oneOf/0/$ref"),
    ({"$defs": {"a/b": {"not": {"$ref": "#/$defs/a~1b"}}}}, "/input_schema/$defs/a~1b/not/$ref"),
    ({"$id": "urn:x", "$defs": {"a": {"$id": "urn:y", "anyOf": [{"$ref": "urn:y"}]}}},
     "/input_schema/$defs/a/anyOf/0/$ref"),
    ({"$anchor": "top", "allOf": [{"$ref": "#top"}]}, "/input_schema/allOf/0/$ref"),
    ({"$dynamicAnchor": "node", "anyOf": [{"$dynamicRef": "#node"}]}, "/input_schema/anyOf/0/$dynamicRef"),
    ({"properties": {"x": {"$ref": "#/properties/x/allOf/0", "allOf": [{"$ref": "#/properties/x"}]}}},
     "/input_schema/properties/x/allOf/0/$ref"),
    ({"$ref": "#/unknown", "unknown": {"$ref": "#"}}, "/input_schema/unknown/$ref"),
])
def test_references_that_never_consume_the_instance_are_refused_with_the_pointer(schema, pointer) -> None:
    with pytest.raises(SchemaInvalid) as raised:
        check_schema(schema, field="input_schema")
    assert raised.value.errors and raised.value.errors[0]["pointer"] == pointer, raised.value.errors
    assert "cycle" in raised.value.errors[0]["detail"], raised.value.errors


@pytest.mark.parametrize("schema, good, bad", [
    ({"type": "array", "items": {"$ref": "#"}}, [[], [[]]], [[1]]),
    ({"type": "object", "properties": {"next": {"$ref": "#"}}}, {"next": {"next": {}}}, {"next": {"next": 1}}),
    ({"anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#"}}]}, ["a", ["b"]], ["a", [1]]),
    ({"$defs": {"n": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"},
     {"a": {"b": {}}}, {"a": {"b": 1}}),
    ({"$dynamicAnchor": "node", "type": "object",
      "properties": {"children": {"type": "array", "items": {"$dynamicRef": "#node"}}}},
     {"children": [{"children": []}]}, {"children": [1]}),
    ({"type": "object", "propertyNames": {"$ref": "#/$defs/name"}, "$defs": {"name": {"maxLength": 2}}},
     {"ab": 1}, {"abc": 1}),
    ({"type": "array", "prefixItems": [{"$ref": "#"}], "contains": {"$ref": "#"}, "minContains": 0,
      "unevaluatedItems": {"$ref": "#"}},
     [[]], 1),
])
def test_recursion_through_children_is_accepted_and_works(schema, good, bad) -> None:
    check_schema(schema, field="output_schema")
    assert violations(schema, good) == []
    assert violations(schema, bad) != []


# --- Validation is bounded in time and never raises on deep documents.

_EXPONENTIAL = {"$ref": "#/$defs/n", "$defs": {"n": {"anyOf": [
    {"type": "array", "items": {"$ref": "#/$defs/n"}},
    {"type": "array", "items": {"$ref": "#/$defs/n"}},
    {"type": "integer"},
]}}}


def test_validation_past_its_budget_is_a_violation() -> None:
    check_schema(_EXPONENTIAL, field="input_schema")  # no cycle: each step consumes the instance
    out = _bounded(
        "import json; from executor.schemas import violations\n"
        f"doc = 'x'\nfor _ in range(40): doc = [doc]\n"
        f"print(json.dumps(violations({_EXPONENTIAL!r}, doc, budget_ms=100)))"
    )
    assert json.loads(out) == [{"pointer": "", "detail": "validation took longer than 100 ms; the document was "
                                                          "not checked"}]


def test_validation_within_budget_reports_violations() -> None:
    doc: object = "x"
    for _ in range(3):
        doc = [doc]
    assert violations(_EXPONENTIAL, doc, budget_ms=5000) != []
    assert violations(_EXPONENTIAL, [[1], [[2]]], budget_ms=5000) == []


def _deep(depth: int) -> object:
    doc: object = 1
    for _ in range(depth):
        doc = [doc]
    return doc


@pytest.mark.parametrize("schema, instance", [
    ({"items": {"$ref": "#"}}, _deep(100_000)),
    ({"uniqueItems": True}, [_deep(100_000), 1]),
    ({"type": "object"}, _deep(100_000)),  # the message would show the instance
    ({"type": "array", "unevaluatedItems": False, "prefixItems": [{"$ref": "#"}]}, _deep(100_000)),
])
def test_documents_too_deep_to_validate_are_violations_not_errors(schema, instance) -> None:
    found = violations(schema, instance)
    assert found and all(v["pointer"] == "" for v in found), found
    assert any("deep" in v["detail"] for v in found), found


def test_schemas_too_deep_to_check_are_refused() -> None:
    schema: dict = {}
    for _ in range(100_000):
        schema = {"not": schema}
    with pytest.raises(SchemaInvalid):
        check_schema(schema, field="input_schema")


def test_unique_items_runs_in_linear_time_and_keeps_json_equality() -> None:
    out = _bounded("from executor.schemas import violations\n"
                   "print(len(violations({'uniqueItems': True}, [{'a': i} for i in range(50000)])))")
    assert out == "0"
    unique = {"uniqueItems": True}
    assert violations(unique, [1, 1.0]) != []
    assert violations(unique, [{"a": 1, "b": [2]}, {"b": [2], "a": 1}]) != []
    assert violations(unique, [1, True]) == []
    assert violations(unique, [0, False, None, "", [], {}]) == []
    assert violations(unique, [[1], [True]]) == []


async def test_the_off_loop_entry_point_gives_the_same_answer() -> None:
    schema = {"type": "object", "properties": {"s": {"pattern": "^a+$"}}}
    assert await violations_off_loop(schema, {"s": "aab"}, budget_ms=1000) == violations(schema, {"s": "aab"})
    assert await violations_off_loop(schema, {"s": "aa"}, budget_ms=1000) == []


async def test_too_deep_is_a_violation_on_the_validation_threads_too() -> None:
    found = await violations_off_loop({"items": {"$ref": "#"}}, _deep(100_000), budget_ms=5000)
    assert found and "deep" in found[0]["detail"], found


def test_metaschema_errors_point_into_the_request_body() -> None:
    with pytest.raises(SchemaInvalid) as raised:
        check_schema({"properties": {"x": {"type": 5}}}, field="output_schema")
    assert raised.value.errors == [{"pointer": "/output_schema/properties/x/type",
                                    "detail": "5 is not valid under any of the given schemas"}]


def test_registration_check_has_a_budget_too() -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string", "minLength": 1} for i in range(3000)}}
    with pytest.raises(SchemaInvalid) as raised:  # ~0.5 s of work here
        check_schema(schema, field="input_schema", budget_ms=5)
    assert raised.value.errors == [{"pointer": "/input_schema",
                                    "detail": "checking the schema took longer than 5 ms: make it smaller"}]
    check_schema(schema, field="input_schema", budget_ms=60_000)
