"""Agents' secrets: write-only values the egress gateway injects into upstream requests, listed by
name and version, deleted; and their re-sealing after the operator rotates the key (docs/secrets.md)."""

from __future__ import annotations

from executor.api.contract.components import INSTANT, closed, page_of, ref
from executor.api.contract.executions import CURSOR, LIMIT
from executor.api.contract.operation import OPERATOR, SERVICE, Operation, Reply, Schema
from executor.secrets import MAX_VALUE_BYTES, NAME_PATTERN

TAG = "secrets"
MANAGERS = (OPERATOR, SERVICE)
_NAME: Schema = {"type": "string", "pattern": NAME_PATTERN,
                 "description": "a letter or _, then up to 63 letters, digits, _ . -"}

SCHEMAS: dict[str, Schema] = {
    "PutSecret": {
        "type": "object", "additionalProperties": False, "required": ["value"],
        "properties": {
            "value": {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_BYTES,
                      "description": f"a non-empty string of at most {MAX_VALUE_BYTES} bytes of UTF-8"},
        },
        "description": "A secret's value: sealed at rest, never shown again, used only by the egress gateway.",
    },
    "Secret": closed({
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "version": {"type": "integer", "minimum": 1, "description": "how many times the name was written"},
        "created_at": INSTANT,
        "updated_at": {**INSTANT, "description": "when its value was last written"},
    }, description="A secret as it may be shown: never its value."),
    "SecretPage": page_of("Secret"),
    "ResealReport": closed({
        "resealed": {"type": "integer", "minimum": 0, "description": "secrets moved to the current key"},
        "unreadable": {"type": "integer", "minimum": 0,
                       "description": "secrets under a key this instance does not hold, left as they were "
                                      "(the service log names each key id)"},
    }),
}

_PATHS: dict[str, Schema] = {"name": _NAME}

OPERATIONS = (
    Operation(
        "PUT", "/v1/agents/{id}/secrets/{name}", "putSecret", "Write or replace a secret of an agent", TAG,
        MANAGERS, body=ref("PutSecret"), path_params=_PATHS,
        replies=(Reply(201, "Written: version 1.", ref("Secret")),
                 Reply(200, "Replaced: one version more.", ref("Secret"))),
        description="The agent's service or an operator writes a named secret, which the egress gateway "
                    "injects into the agent's declared upstream requests (docs/secrets.md). Write-only: no "
                    "answer ever shows a value. A name that does not match the pattern is `request_invalid`.",
        examples={"a model API key": {"value": "sk-example-0123456789"}},
    ),
    Operation(
        "GET", "/v1/agents/{id}/secrets", "listSecrets", "List an agent's secrets by name (never their values)",
        TAG, MANAGERS, query=(LIMIT, CURSOR),
        replies=(Reply(200, "A page of the agent's secrets, by name.", ref("SecretPage")),),
    ),
    Operation(
        "DELETE", "/v1/agents/{id}/secrets/{name}", "deleteSecret", "Delete a secret of an agent", TAG,
        MANAGERS, path_params=_PATHS,
        replies=(Reply(204, "Deleted."),),
    ),
    Operation(
        "POST", "/v1/secrets/reseal", "resealSecrets", "Re-seal every secret under the current key", TAG,
        (OPERATOR,),
        replies=(Reply(200, "How many were moved, and how many could not be read here.", ref("ResealReport")),),
        description="After a rotation (the new key in EXECUTOR_SECRETS_KEY, the old one in "
                    "EXECUTOR_SECRETS_PREVIOUS_KEYS, on every instance): every secret still under a previous "
                    "key is sealed again under the current one. Safe to repeat.",
    ),
)
