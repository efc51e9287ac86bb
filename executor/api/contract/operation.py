"""One HTTP operation as the contract states it. Each area's module in this package lists its
operations (`OPERATIONS`); openapi.py assembles them into the OpenAPI 3.1 document, and the
validation middleware (validation.py) checks every request against the same schemas, so the
document and the checks cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

# Roles, as strings: the contract is data, and records.principals.Role values are these.
USER, SERVICE, OPERATOR = "user", "service", "operator"
ANY_ROLE: tuple[str, ...] = ()  # any valid bearer token


@dataclass(frozen=True)
class Param:
    """A query parameter or request header. Query values arrive as text: a parameter whose schema
    says integer or number is read as one before it is checked."""

    name: str
    schema: Schema
    description: str
    required: bool = False


@dataclass(frozen=True)
class Reply:
    """One success answer: its status, what the body is, and the headers it carries."""

    status: int
    description: str
    schema: Schema | None = None  # None: no body (204)
    media: str = "application/json"
    headers: tuple[str, ...] = ()  # names of components.HEADERS


@dataclass(frozen=True)
class Operation:
    method: str  # GET, POST, PUT, DELETE
    path: str  # as routed, with OpenAPI's {name} for a parameter ({ref:.+} is written {ref})
    operation_id: str
    summary: str
    tag: str
    roles: tuple[str, ...] | None  # None: public, no token; ANY_ROLE: any token; else these roles
    replies: tuple[Reply, ...]
    problems: tuple[str, ...] = ()  # problem slugs this operation can answer, beyond the common ones
    body: Schema | None = None  # JSON Schema of a JSON request body; None: the operation takes none
    body_media: str = "application/json"  # application/wasm for a module upload (not validated here)
    body_required: bool = True
    query: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    path_params: dict[str, Schema] = field(default_factory=dict)  # name -> schema (default: a string)
    description: str = ""
    examples: dict[str, Any] = field(default_factory=dict)  # name -> request body example (validated by tests)
    idempotent: bool = False  # takes Idempotency-Key: a retry with the same key and body replays the answer
