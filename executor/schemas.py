"""JSON Schema (Draft 2020-12) checks for agents' input and output schemas.

A tenant's schema must never make the service fetch a URL: jsonschema
retrieves remote `$ref`s by default, so every validator here gets a registry
holding only the schema itself, and registration refuses a `$ref` that this
registry cannot resolve.
"""

from __future__ import annotations

from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from executor.errors import SchemaInvalid

_MAX_VIOLATIONS = 100
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _registry(schema: dict[str, Any]) -> tuple[Registry, str]:
    resource = DRAFT202012.create_resource(schema)
    base = resource.id() or ""
    return Registry().with_resource(base, resource).crawl(), base


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    registry, _ = _registry(schema)
    return Draft202012Validator(schema, registry=registry)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield value
            elif key not in ("const", "enum", "default", "examples"):  # data, not schema
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def check_schema(schema: Any, *, field: str) -> None:
    """Raise SchemaInvalid unless `schema` is a Draft 2020-12 schema whose refs all resolve locally."""
    if not isinstance(schema, (dict, bool)):
        raise SchemaInvalid(f"{field} must be a JSON object (or a boolean schema)")
    if isinstance(schema, bool):
        return
    if schema.get("$schema", _DIALECT).rstrip("#") != _DIALECT:
        raise SchemaInvalid(f"{field}: only Draft 2020-12 schemas are accepted, not {schema['$schema']!r}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SchemaInvalid(
            f"{field}: {exc.message}", errors=[{"pointer": _pointer(exc.path), "detail": exc.message}]
        ) from None
    registry, base = _registry(schema)
    resolver = registry.resolver(base_uri=base)
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise SchemaInvalid(
                f"{field}: $ref {ref!r} does not resolve inside the schema (remote references are never fetched)"
            ) from None


def violations(schema: Any, instance: Any) -> list[dict[str, str]]:
    """Every violation of `schema` by `instance`, each with the JSON pointer of where it is."""
    if isinstance(schema, bool):
        return [] if schema else [{"pointer": "", "detail": "the schema accepts nothing"}]
    found = []
    try:
        for error in _validator(schema).iter_errors(instance):
            found.append({"pointer": _pointer(error.absolute_path), "detail": error.message})
            if len(found) >= _MAX_VIOLATIONS:
                break
    except Unresolvable as exc:  # registration refuses these; a stored one is still never fetched
        found.append({"pointer": "", "detail": f"unresolvable reference in the schema: {exc}"})
    found.sort(key=lambda v: v["pointer"])
    return found


def _pointer(path: Any) -> str:
    """RFC 6901: '' for the document, '/a/0/b~1c' for a nested member."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)
