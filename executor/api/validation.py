"""Every request checked against its operation in the contract (executor/api/contract), before
its handler runs: the caller's role, the query parameters, the headers, the JSON body.

The schemas that do this are the ones the OpenAPI document publishes, so the two cannot disagree.
A handler reads what was checked with `query(request, name)` and `body(request)`. Violations keep
the API's shape: 422 `request_invalid`, each with its JSON pointer in the body (`/limits/cpus`), or
`?name` for a query parameter and `header:Name` for a header."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from executor import jsondoc
from executor.api.auth import principal
from executor.api.bodies import is_decimal, read_json
from executor.api.contract import openapi
from executor.api.contract.operation import Operation, Param, Schema
from executor.api.problems import Handler
from executor.errors import RequestInvalid
from executor.records.principals import Role

QUERY_KEY = "checked_query"
OPERATION_KEY = "operation"

# The schemas are ours and small; what a request carries is only walked as deep as they describe
# (an execution's `input` is `{}`: any JSON, not descended into), so checking stays cheap on the loop.
_FORMATS = Draft202012Validator.FORMAT_CHECKER


@dataclass(frozen=True)
class CheckedOperation:
    operation: Operation
    body: Any  # a validator, or None when the operation takes no JSON body
    params: tuple[tuple[Param, Any, str], ...]  # (param, validator, where: "query" | "header")


def contract_validator(schema: Schema) -> Any:
    """A Draft 2020-12 validator of `schema`, which may refer to the document's named schemas."""
    # The operation's schema may refer to the document's named ones (#/components/schemas/...):
    # they sit beside it in one root, where such a pointer resolves.
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/checked",
            "$defs": {"checked": schema}, "components": {"schemas": openapi.schemas()}}
    return Draft202012Validator(root, format_checker=_FORMATS)


def checked_operations() -> dict[tuple[str, str], CheckedOperation]:
    """(method, path) -> the operation with its validators, built once when the app is made."""
    found: dict[tuple[str, str], CheckedOperation] = {}
    for op in openapi.operations():
        headers = op.headers + ((openapi.IDEMPOTENCY_KEY,) if op.idempotent else ())
        params = tuple((p, contract_validator(p.schema), "query") for p in op.query) + tuple(
            (p, contract_validator(p.schema), "header") for p in headers)
        body = contract_validator(op.body) if op.body is not None and op.body_media == "application/json" else None
        found[(op.method, op.path)] = CheckedOperation(op, body, params)
    return found


CHECKED_OPERATIONS = web.AppKey("checked_operations", dict)


def route_path(request: web.Request) -> str | None:
    """The path template the request was routed by, as the contract writes it ({ref:.+} is {ref})."""
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


@web.middleware
async def validation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = route_path(request)
    method = "GET" if request.method == "HEAD" else request.method
    checked = request.app[CHECKED_OPERATIONS].get((method, path)) if path else None
    if checked is not None:
        op = checked.operation
        request[OPERATION_KEY] = op
        if op.roles:
            principal(request, *(Role(r) for r in op.roles))
        request[QUERY_KEY] = _check_params(request, checked.params)
        if checked.body is not None and (op.body_required or request.body_exists):
            # read_json keeps what it parsed: the handler's own read_json returns this checked document.
            violations = body_violations(checked, await read_json(request))
            if violations:
                raise RequestInvalid(_summary(violations), errors=violations)
    return await handler(request)


def body_violations(checked: CheckedOperation, document: Any) -> list[dict[str, str]]:
    """Where a request body breaks its operation's schema: [{pointer, detail}], empty when it fits."""
    return [] if checked.body is None else _violations(checked.body.iter_errors(document))


def query(request: web.Request, name: str) -> Any:
    """A query parameter (or header) as checked: typed as its schema says, its default when absent."""
    return request[QUERY_KEY].get(name)


def _check_params(request: web.Request, params: tuple[tuple[Param, Any, str], ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    violations: list[dict[str, str]] = []
    for param, validator, where in params:
        at = f"?{param.name}" if where == "query" else f"header:{param.name}"
        raw = (request.query if where == "query" else request.headers).get(param.name)
        if raw is None:
            if param.required:
                violations.append({"pointer": at, "detail": "required"})
            values[param.name] = param.schema.get("default")
            continue
        value, ok = _typed(raw, param.schema)
        errors = list(validator.iter_errors(value)) if ok else []
        if not ok or errors:
            violations.append({"pointer": at, "detail": _param_detail(param.schema, errors)})
            continue
        values[param.name] = value
    if violations:
        raise RequestInvalid(_summary(violations), errors=violations)
    return values


def _typed(raw: str, schema: Schema) -> tuple[Any, bool]:
    """A query value read as its schema's type. ASCII only: '²'.isdigit() is true, and int() refuses it."""
    kind = schema.get("type")
    if kind == "integer":
        negative = raw.startswith("-")
        digits = raw[1:] if negative else raw
        if not is_decimal(digits):
            return None, False
        return (-int(digits) if negative else int(digits)), True
    if kind == "number":
        try:
            value = float(raw) if raw.isascii() else None
        except ValueError:
            value = None
        if value is None or value != value or value in (float("inf"), float("-inf")):
            return None, False
        return value, True
    if kind == "boolean":
        return (raw == "true", True) if raw in ("true", "false") else (None, False)
    return raw, True


def _param_detail(schema: Schema, errors: list[ValidationError]) -> str:
    kind = schema.get("type", "string")
    if kind in ("integer", "number"):
        bounds = "".join(f" {word} {schema[key]}" for key, word in (("minimum", "from"), ("maximum", "to"))
                         if key in schema)
        return ("an integer" if kind == "integer" else "a number") + bounds
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    return _detail(errors[0]) if errors else "not accepted"


def _violations(errors: Iterable[ValidationError]) -> list[dict[str, str]]:
    found: dict[tuple[str, str], None] = {}
    for error in errors:
        for pointer, detail in _explain(error):
            found[(pointer, detail)] = None
    return [{"pointer": p, "detail": d} for p, d in sorted(found)]


def _explain(error: ValidationError) -> list[tuple[str, str]]:
    at = jsondoc.pointer(error.absolute_path)
    instance, expected = error.instance, cast(Any, error.validator_value)
    if error.validator == "required" and isinstance(instance, dict):
        return [(at + jsondoc.pointer([name]), "required") for name in expected if name not in instance]
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return [(at + jsondoc.pointer([name]), "unknown field") for name in instance if name not in known]
    if error.validator in ("anyOf", "oneOf") and error.context:
        deepest = best_match(error.context)
        return _explain(deepest) if jsondoc.pointer(deepest.absolute_path) != at else [(at, _detail(error))]
    return [(at, _detail(error))]


def _detail(error: ValidationError) -> str:
    """A short reason that never quotes the value (which may be a megabyte, or a secret)."""
    rule, expected = error.validator, cast(Any, error.validator_value)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if "description" in schema and rule not in ("required",):
        return str(schema["description"])
    words: dict[str, Callable[[], str]] = {
        "type": lambda: "must be " + (" or ".join(expected) if isinstance(expected, list) else str(expected)),
        "enum": lambda: "must be one of " + ", ".join(map(str, expected)),
        "const": lambda: f"must be {expected!r}",
        "minimum": lambda: f"must be >= {expected}",
        "maximum": lambda: f"must be <= {expected}",
        "exclusiveMinimum": lambda: f"must be > {expected}",
        "exclusiveMaximum": lambda: f"must be < {expected}",
        "minLength": lambda: f"must be at least {expected} characters",
        "maxLength": lambda: f"must be at most {expected} characters",
        "pattern": lambda: "does not have the expected form",
        "format": lambda: f"must be a {expected}",
        "minItems": lambda: f"must have at least {expected} items",
        "maxItems": lambda: f"must have at most {expected} items",
        "uniqueItems": lambda: "must not repeat an item",
        "minProperties": lambda: f"must have at least {expected} members",
        "maxProperties": lambda: f"must have at most {expected} members",
        "anyOf": lambda: "does not match any of the accepted forms",
        "oneOf": lambda: "does not match exactly one of the accepted forms",
        "not": lambda: "is not accepted here",
    }
    explain = words.get(str(rule))
    return explain() if explain else "is not accepted"


def _summary(violations: list[dict[str, str]]) -> str:
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return f"{first['pointer'] or 'the body'}: {first['detail']}{more}"
