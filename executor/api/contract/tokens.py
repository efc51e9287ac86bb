"""Tokens: issue one (its secret shown once), list them, revoke one at once (docs/tokens.md)."""

from __future__ import annotations

from typing import Any

from executor.api.contract.executions import CURSOR, LIMIT
from executor.api.contract.operation import OPERATOR, SERVICE, Operation, Param, Reply, Schema
from executor.records.principals import PRIORITIES

TAG = "tokens"
MANAGERS = (SERVICE, OPERATOR)
ROLES = ["user", "service", "operator"]

_SUBJECT = {"type": "string", "minLength": 1, "maxLength": 200}
_INSTANT = {"type": "string", "format": "date-time"}
_MAYBE_INSTANT = {"type": ["string", "null"], "format": "date-time"}
_PRIORITY = {"type": "string", "enum": list(PRIORITIES)}

_TOKEN_FIELDS: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid"},
    "role": {"type": "string", "enum": ROLES},
    "subject": {**_SUBJECT, "description": "whom the token names: a user, a service or an operator"},
    "created_at": _INSTANT,
    "created_by": {"type": ["string", "null"],
                   "description": "the issuer, as \"role:subject\"; null for tokens made on the host "
                                  "(the bootstrap token, `executor tokens create`)"},
    "expires_at": {**_MAYBE_INSTANT, "description": "refused from this instant on; null: never"},
    "last_used_at": {**_MAYBE_INSTANT,
                     "description": "the last authenticated request, to about a minute; null: never used"},
    "revoked_at": {**_MAYBE_INSTANT, "description": "refused since this instant; null: not revoked"},
    "priorities": {"type": "array", "items": _PRIORITY, "minItems": 1, "uniqueItems": True,
                   "description": "the priority classes its submissions may ask for: an operator's all, a user's "
                                  "normal, a service's normal and low unless an operator granted others"},
}

SCHEMAS: dict[str, Schema] = {
    "CreateToken": {
        "type": "object", "additionalProperties": False, "required": ["role", "subject"],
        "properties": {
            "role": {"type": "string", "enum": ROLES,
                     "description": "user, service or operator (a service issues user tokens only)"},
            "subject": {**_SUBJECT, "description": "whom the token names, a non-empty string of up to 200 characters"},
            "expires_at": {**_MAYBE_INSTANT,
                           "description": "an RFC 3339 date-time with its offset, in the future; null for never"},
            "priorities": {"type": "array", "items": _PRIORITY, "minItems": 1, "uniqueItems": True,
                           "description": "a service token's priority classes, `normal` among them; set by an "
                                          "operator only (default: normal and low)"},
        },
    },
    "Token": {
        "type": "object", "additionalProperties": False, "required": list(_TOKEN_FIELDS),
        "properties": _TOKEN_FIELDS,
        "description": "A bearer token's record; never its secret, which is not stored.",
    },
    "IssuedToken": {
        "type": "object", "additionalProperties": False, "required": [*_TOKEN_FIELDS, "token"],
        "properties": {
            **_TOKEN_FIELDS,
            "token": {"type": "string", "pattern": "^exe_",
                      "description": "the secret, to send as `Authorization: Bearer <token>`; shown only here"},
        },
        "description": "A token just issued, with its secret (shown once; only its SHA-256 is kept).",
    },
    "TokenPage": {
        "type": "object", "additionalProperties": False, "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}},
            "next_cursor": {"type": ["string", "null"], "description": "the next page's `cursor`; null: the last"},
        },
    },
}

TOKEN = {"$ref": "#/components/schemas/Token"}

OPERATIONS = (
    Operation(
        "POST", "/v1/tokens", "createToken", "Issue a bearer token (its secret shown once)", TAG, MANAGERS,
        body={"$ref": "#/components/schemas/CreateToken"}, idempotent=True,
        replies=(Reply(201, "Issued; the answer is not to be cached.", {"$ref": "#/components/schemas/IssuedToken"},
                       headers=("Cache-Control",)),),
        problems=("request_invalid", "forbidden"),
        description="An operator issues tokens of any role; a service issues user tokens (the subject is the "
                    "user), which it may then list and revoke. `expires_at` must be in the future. "
                    "A retry with the same Idempotency-Key replays this answer, the secret included, to the "
                    "same caller only (docs/idempotency.md).",
        examples={"a user's token for a month": {"role": "user", "subject": "alice",
                                                 "expires_at": "2027-01-31T00:00:00Z"},
                  "a service's token": {"role": "service", "subject": "marketplace"},
                  "a service's token that may submit at high priority":
                      {"role": "service", "subject": "marketplace", "priorities": ["high", "normal", "low"]}},
    ),
    Operation(
        "GET", "/v1/tokens", "listTokens", "List tokens, newest first (never their secrets)", TAG, MANAGERS,
        query=(LIMIT, CURSOR,
               Param("role", {"type": "string", "enum": ROLES}, "Only tokens of this role."),
               Param("subject", _SUBJECT, "Only tokens naming this subject.")),
        replies=(Reply(200, "A page of tokens: an operator sees every token, a service the user tokens it issued.",
                       {"$ref": "#/components/schemas/TokenPage"}),),
    ),
    Operation(
        "DELETE", "/v1/tokens/{id}", "revokeToken", "Revoke a token at once", TAG, MANAGERS,
        replies=(Reply(200, "The token, revoked (again: the same record). Refused from the next request on, "
                            "on every API process.", TOKEN),),
        problems=("not_found", "conflict"),
        description="An operator revokes any token, a service the user tokens it issued (any other id is "
                    "`not_found`). The last live operator token is not revoked (`conflict`): create another "
                    "operator token first.",
    ),
)
