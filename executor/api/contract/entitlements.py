"""Entitlements: the marketplace service grants a user an agent, lists and revokes grants."""

from __future__ import annotations

from executor.api.contract.executions import CURSOR, LIMIT
from executor.api.contract.operation import ANY_ROLE, OPERATOR, SERVICE, Operation, Param, Reply, Schema

TAG = "entitlements"
ENTITLEMENT = {"$ref": "#/components/schemas/Entitlement"}

SCHEMAS: dict[str, Schema] = {
    "GrantEntitlement": {
        "type": "object", "additionalProperties": False, "required": ["user", "agent_id"],
        "properties": {
            "user": {"type": "string", "minLength": 1, "maxLength": 200,
                     "description": "the user's subject, a non-empty string"},
            "agent_id": {"type": "string", "description": "the agent's id, a string"},
            "expires_at": {"type": ["string", "null"], "format": "date-time",
                           "description": "an RFC 3339 date-time with its offset, or null for never"},
            "uses": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**31 - 1,
                     "description": "a non-negative integer, or null for unlimited"},
        },
    },
}

OPERATIONS = (
    Operation(
        "PUT", "/v1/entitlements", "grantEntitlement", "Grant a user an agent, or set its terms anew",
        TAG, (SERVICE, OPERATOR),
        body={"$ref": "#/components/schemas/GrantEntitlement"},
        replies=(Reply(201, "Granted.", ENTITLEMENT, headers=("Location",)),
                 Reply(200, "The live entitlement's terms, replaced.", ENTITLEMENT, headers=("Location",))),
        problems=("not_found",),
        description="Idempotent by nature (PUT): the same grant twice leaves one entitlement with those terms.",
        examples={"60 uses for a month": {"user": "alice", "agent_id": "0b5c1a52-6f0e-4c8e-9a55-2f1d8f7e0c11",
                                          "uses": 60, "expires_at": "2027-01-31T00:00:00Z"}},
    ),
    Operation(
        "GET", "/v1/entitlements", "listEntitlements", "List entitlements, newest first", TAG, ANY_ROLE,
        query=(LIMIT, CURSOR,
               Param("user", {"type": "string", "minLength": 1, "maxLength": 200}, "Only this user's."),
               Param("agent_id", {"type": "string", "minLength": 1}, "Only those to this agent.")),
        problems=("forbidden",),
        replies=(Reply(200, "A page of entitlements (a user sees their own).",
                       {"$ref": "#/components/schemas/EntitlementPage"}),),
    ),
    Operation(
        "DELETE", "/v1/entitlements/{id}", "revokeEntitlement", "Revoke an entitlement at once", TAG,
        (SERVICE, OPERATOR),
        replies=(Reply(200, "The entitlement, revoked.", ENTITLEMENT),),
    ),
)
