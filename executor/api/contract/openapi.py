"""The OpenAPI 3.1 document, assembled from every area's operations and schemas.

Nothing here is written twice: a route's request schemas are the ones the validation
middleware enforces, and the problems a route can answer are named by slug, their statuses
read from executor/errors.py."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from functools import cache
from typing import Any

from executor import __version__
from executor.api.contract.operation import Operation, Param, Schema
from executor.errors import Problem

# Each module exports OPERATIONS and may export SCHEMAS (see __init__.py).
AREAS = ("components", "docs", "console", "health", "executions", "batches", "events", "agents", "entitlements",
         "tokens", "receipts", "webhooks", "images", "observe", "secrets")

# Problems aiohttp itself answers (routing), beside executor/errors.py's classes.
_ROUTING_PROBLEMS = {"method_not_allowed": 405}

HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "Where the created or accepted resource is.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this answer replays the one first given for this Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RateLimit-Policy": {
        "description": "The rate-limit policies that apply (draft-ietf-httpapi-ratelimit-headers).",
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": "What is left of each policy's quota, and when it refills.",
        "schema": {"type": "string"},
    },
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "Cache-Control": {"description": "`no-store` on answers that hold a secret.", "schema": {"type": "string"}},
    "X-Request-Id": {
        "description": "This request's id, on every answer: the caller's own `X-Request-Id` when it is 1 to 128 "
                       "characters a URN holds unescaped (letters, digits and `-._~!$&'()*+,;=:@/`, not starting "
                       "with `/`), else one the service made. Its log lines and a problem's `instance` carry it "
                       "(docs/logs.md).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    },
}
# Headers on every answer, success or problem.
EVERY_ANSWER = ("X-Request-Id",)

IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
    "Makes a retry safe: the same key with the same body replays the first answer (with "
    "`Idempotent-Replayed: true`) for 24 hours; the same key with another body is refused "
    "(`idempotency_key_reused`). Keys are per caller.",
)


def problem_statuses() -> dict[str, int]:
    """Every problem slug the API can answer, with its HTTP status."""
    found: dict[str, int] = dict(_ROUTING_PROBLEMS)
    pending: list[type[Problem]] = [Problem]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        found[cls.slug] = cls.status
    del found["internal_error"]  # a 500 is a defect, never part of the contract
    return found


def area_modules() -> Iterator[Any]:
    for name in AREAS:
        yield importlib.import_module(f"executor.api.contract.{name}")


@cache
def operations() -> tuple[Operation, ...]:
    return tuple(op for module in area_modules() for op in getattr(module, "OPERATIONS", ()))


@cache
def schemas() -> dict[str, Schema]:
    found: dict[str, Schema] = {}
    for module in area_modules():
        for name, schema in getattr(module, "SCHEMAS", {}).items():
            if name in found:
                raise ValueError(f"schema {name!r} is defined twice")
            found[name] = schema
    return found


def problem_slugs(op: Operation) -> list[str]:
    """The problems an operation can answer: the ones every route of its kind can, then its own."""
    slugs = []
    if op.roles is not None:
        slugs.append("unauthenticated")
    if op.roles:
        slugs.append("forbidden")
    if op.body is not None or op.body_media != "application/json":
        slugs += ["malformed_request", "payload_too_large"]
    if op.body is not None or op.query or op.headers:
        slugs.append("request_invalid")
    if "{" in op.path:
        slugs.append("not_found")
    if op.idempotent:  # conflict: the key's first request has not finished (docs/idempotency.md)
        slugs += ["idempotency_key_reused", "conflict"]
    return list(dict.fromkeys(slugs + list(op.problems)))


def _problem_responses(op: Operation) -> dict[str, Any]:
    statuses = problem_statuses()
    by_status: dict[int, list[str]] = {}
    for slug in problem_slugs(op):
        by_status.setdefault(statuses[slug], []).append(slug)
    out: dict[str, Any] = {}
    for status in sorted(by_status):
        listed = ", ".join(f"`{slug}`" for slug in by_status[status])
        out[str(status)] = {
            "description": f"Problem: {listed} (type `urn:executor:problem:<slug>`).",
            "headers": _headers((("Retry-After",) if status in (429, 503) else ()) + EVERY_ANSWER),
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "x-problem-types": by_status[status],  # slugs, for generated clients' typed errors
        }
    return out


def _headers(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _parameter(param: Param, where: str) -> dict[str, Any]:
    return {"name": param.name, "in": where, "required": param.required, "description": param.description,
            "schema": param.schema}


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True,
             "schema": op.path_params.get(name, {"type": "string", "minLength": 1})} for name in names]


def _operation(op: Operation) -> dict[str, Any]:
    headers = op.headers + ((IDEMPOTENCY_KEY,) if op.idempotent else ())
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _path_parameters(op) + [_parameter(p, "query") for p in op.query]
        + [_parameter(p, "header") for p in headers],
        "security": [] if op.roles is None else [{"bearer": []}],
        "x-roles": ["user", "service", "operator"] if op.roles == () else list(op.roles or ()),
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        media: dict[str, Any] = {"schema": op.body}
        if op.examples:
            media["examples"] = {name: {"value": value} for name, value in op.examples.items()}
        out["requestBody"] = {"required": op.body_required, "content": {op.body_media: media}}
    elif op.body_media != "application/json":
        raw = {"type": "string", "contentMediaType": op.body_media}
        out["requestBody"] = {"required": True, "content": {op.body_media: {"schema": raw}}}
    responses: dict[str, Any] = {}
    for reply in op.replies:
        answer: dict[str, Any] = {"description": reply.description}
        names = reply.headers + (("Idempotent-Replayed",) if op.idempotent and reply.status < 300 else ())
        answer["headers"] = _headers(names + EVERY_ANSWER)
        if reply.schema is not None:
            answer["content"] = {reply.media: {"schema": reply.schema}}
        responses[str(reply.status)] = answer
    responses.update(_problem_responses(op))
    out["responses"] = responses
    return out


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (built once per process)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations():
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "executor",
            "version": __version__,
            "summary": "Sandboxed execution of marketplace agents, with a signed receipt for every result.",
            "description": "Conventions (roles, errors, pagination, idempotency, rate limits, batches, "
                           "retention): docs/api.md. Every error is `application/problem+json` (RFC 9457) "
                           "with a stable `type`, `urn:executor:problem:<slug>`.",
            "license": {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in operations())],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "headers": HEADERS,
            "securitySchemes": {
                "bearer": {
                    "type": "http", "scheme": "bearer",
                    "description": "A token from POST /v1/tokens (or the bootstrap operator token). Its role "
                                   "(user, service or operator) decides what it may do: each operation's "
                                   "`x-roles` lists the roles it admits.",
                },
            },
        },
    }
