"""Agents and their immutable versions: register, publish, read, move, upload a WASM module."""

from __future__ import annotations

from typing import Any

from executor.api.contract.executions import CURSOR, LIMIT
from executor.api.contract.operation import ANY_ROLE, OPERATOR, SERVICE, Operation, Reply, Schema
from executor.secrets import NAME_PATTERN as SECRET_NAME

TAG = "agents"
MANAGERS = (OPERATOR, SERVICE)
AGENT = {"$ref": "#/components/schemas/Agent"}
VERSION_PARAMS: dict[str, Schema] = {"version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
_AMOUNT = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1,
           "description": "a non-negative integer (minor units) up to 2^53-1"}

# The fields of one version; a registration adds name and kind.
_VERSION_FIELDS: dict[str, Any] = {
    "image": {"type": "string", "minLength": 1, "maxLength": 255,
              "description": "an image reference on the engine (container agents)"},
    "command": {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1,
                "description": "a non-empty list of strings, or null for the image's own entrypoint"},
    "input_schema": {"type": ["object", "boolean"], "description": "a JSON Schema (Draft 2020-12)"},
    "output_schema": {"type": ["object", "boolean"], "description": "a JSON Schema (Draft 2020-12)"},
    "limits": {"anyOf": [{"$ref": "#/components/schemas/Limits"}, {"type": "null"}]},
    "pool": {
        "type": ["object", "null"], "additionalProperties": False,
        "description": "pre-started containers for this agent, within the operator's cap",
        "properties": {"min": {"type": "integer", "minimum": 0}, "max": {"type": "integer", "minimum": 0}},
    },
    "description": {"type": ["string", "null"], "maxLength": 10000},
    "fuel": {"type": "integer", "minimum": 1, "description": "a positive integer (WASM agents)"},
    "pricing": {"anyOf": [{"$ref": "#/components/schemas/Pricing"}, {"type": "null"}]},
    "runtime": {"type": ["string", "null"], "minLength": 1, "maxLength": 64,
                "description": "the name of an OCI runtime, or null for the operator's default"},
    "egress": {"type": ["array", "null"], "maxItems": 16, "items": {"$ref": "#/components/schemas/EgressUpstream"},
               "description": "upstreams its tasks may call through the egress gateway (docs/egress.md), each "
                              "on a host the operator allows; null or absent: no network and no socket at all"},
    "egress_limits": {"anyOf": [{"$ref": "#/components/schemas/EgressLimits"}, {"type": "null"}]},
}

SCHEMAS: dict[str, Schema] = {
    "Pricing": {
        "type": "object", "additionalProperties": False, "required": ["currency"],
        "properties": {
            "currency": {"type": "string", "pattern": "^[A-Z][A-Z0-9_-]{1,15}$",
                         "description": "an upper-case currency code such as USD"},
            "decimals": {"type": "integer", "minimum": 0, "maximum": 18},
            "cap": {"anyOf": [_AMOUNT, {"type": "null"}]},
            **{rate: _AMOUNT for rate in ("per_call", "per_cpu_second", "per_mb_second", "per_peak_mb",
                                          "per_egress_request")},
        },
    },
    "EgressUpstream": {
        "type": "object", "additionalProperties": False, "required": ["name", "url"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$",
                     "description": "the host name a task gives it by, over the egress socket (docs/egress.md)"},
            "url": {"type": "string", "minLength": 9, "maxLength": 2048, "pattern": "^https:[/]{2}",
                    "description": "an HTTPS URL prefix (scheme https); requests go to paths under it"},
            "methods": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                                             "OPTIONS"]}},
            "inject": {"anyOf": [{
                "type": "object", "additionalProperties": False, "required": ["header", "secret"],
                "properties": {
                    "header": {"type": "string", "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"},
                    "secret": {"type": "string", "pattern": SECRET_NAME,
                               "description": "the name of one of the agent's secrets"},
                    "format": {"type": "string", "maxLength": 256, "description": "with one {} for the value"},
                }}, {"type": "null"}]},
        },
        "description": "One upstream an agent version may call; the gateway injects the secret, "
                       "the task never sees it.",
    },
    "EgressLimits": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "requests": {"type": "integer", "minimum": 1},
            "bytes_out": {"type": "integer", "minimum": 0},
            "bytes_in": {"type": "integer", "minimum": 0},
            "time_s": {"type": "number", "exclusiveMinimum": 0},
        },
        "description": "Caps per task on its egress; past one the task ends with its egress_*_exceeded error.",
    },
    "PublishVersion": {
        "type": "object", "additionalProperties": False, "required": ["input_schema", "output_schema"],
        "properties": _VERSION_FIELDS,
        "description": "A new version of an agent, of the agent's kind: a container version names an image, "
                       "a WASM version takes no image or command (its module is uploaded after).",
    },
    "RegisterAgent": {
        "type": "object", "additionalProperties": False, "required": ["name", "input_schema", "output_schema"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$",
                     "description": "lowercase letters, digits, . _ -; 1-100 chars"},
            "kind": {"type": "string", "enum": ["container", "wasm"], "default": "container"},
            **_VERSION_FIELDS,
        },
        "if": {"required": ["kind"], "properties": {"kind": {"const": "wasm"}}},
        "then": {"properties": {"image": {"not": {}, "description": "a WASM agent has no image or command"},
                                "command": {"not": {}, "description": "a WASM agent has no image or command"}}},
        "else": {"required": ["image"],
                 "properties": {"fuel": {"not": {}, "description": "only WASM agents take fuel"}}},
    },
}

_REGISTER_EXAMPLE = {
    "name": "wordcount", "image": "executor/wordcount:latest", "command": ["python", "/app/main.py"],
    "input_schema": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
    "output_schema": {"type": "object"}, "limits": {"memory_mb": 128, "timeout_s": 10},
    "pricing": {"currency": "USD", "per_call": 1},
}
_WASM_EXAMPLE = {"name": "wordcount-wasm", "kind": "wasm", "fuel": 1000000000,
                 "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}
_VERSION_PROBLEMS = ("schema_invalid", "limit_exceeded", "image_not_found", "runtime_unavailable")

OPERATIONS = (
    Operation(
        "POST", "/v1/agents", "registerAgent", "Register an agent (its version 1)", TAG, MANAGERS,
        body={"$ref": "#/components/schemas/RegisterAgent"}, idempotent=True,
        replies=(Reply(201, "Registered; the image is pinned to its id.", AGENT, headers=("Location",)),),
        problems=("conflict", *_VERSION_PROBLEMS),
        examples={"container": _REGISTER_EXAMPLE, "wasm": _WASM_EXAMPLE},
    ),
    Operation(
        "GET", "/v1/agents", "listAgents", "List agents by name, each at its newest version", TAG, ANY_ROLE,
        query=(LIMIT, CURSOR),
        replies=(Reply(200, "A page of agents.", {"$ref": "#/components/schemas/AgentPage"}),),
    ),
    Operation(
        "GET", "/v1/agents/{id}", "getAgent", "Read an agent at its newest version", TAG, ANY_ROLE,
        replies=(Reply(200, "The agent.", AGENT),),
    ),
    Operation(
        "PUT", "/v1/agents/{id}/module", "uploadModule", "Upload the newest version's WebAssembly module",
        TAG, MANAGERS, body_media="application/wasm",
        replies=(Reply(200, "Checked, compiled once, baked into the version's image.", AGENT),),
        problems=("module_invalid", "conflict", "wasm_runtime_unavailable"),
    ),
    Operation(
        "PUT", "/v1/agents/{id}/versions/{version}/module", "uploadVersionModule",
        "Upload a version's WebAssembly module", TAG, MANAGERS, body_media="application/wasm",
        path_params=VERSION_PARAMS,
        replies=(Reply(200, "Checked, compiled once, baked into the version's image.", AGENT),),
        problems=("module_invalid", "conflict", "wasm_runtime_unavailable"),
    ),
    Operation(
        "POST", "/v1/agents/{id}/versions", "publishVersion", "Publish a new immutable version", TAG, MANAGERS,
        body={"$ref": "#/components/schemas/PublishVersion"}, idempotent=True,
        replies=(Reply(201, "Published.", AGENT, headers=("Location",)),),
        problems=_VERSION_PROBLEMS,
        examples={"new image": {k: v for k, v in _REGISTER_EXAMPLE.items() if k != "name"}},
    ),
    Operation(
        "GET", "/v1/agents/{id}/versions", "listVersions", "List an agent's versions, oldest first", TAG, ANY_ROLE,
        query=(LIMIT, CURSOR),
        replies=(Reply(200, "A page of the agent's versions, oldest first.",
                       {"$ref": "#/components/schemas/AgentPage"}),),
    ),
    Operation(
        "GET", "/v1/agents/{id}/versions/{version}", "getVersion", "Read one version", TAG, ANY_ROLE,
        path_params=VERSION_PARAMS,
        replies=(Reply(200, "The version.", AGENT),),
    ),
    Operation(
        "POST", "/v1/agents/{id}/versions/{version}/deprecate", "deprecateVersion",
        "Deprecate a version (it still runs when named)", TAG, MANAGERS, path_params=VERSION_PARAMS,
        replies=(Reply(200, "The version, deprecated.", AGENT),), problems=("conflict",),
    ),
    Operation(
        "POST", "/v1/agents/{id}/versions/{version}/withdraw", "withdrawVersion",
        "Withdraw a version (it never runs again)", TAG, MANAGERS, path_params=VERSION_PARAMS,
        replies=(Reply(200, "The version, withdrawn.", AGENT),), problems=("conflict",),
    ),
    Operation(
        "GET", "/v1/agents/{id}/stats", "agentStats", "Per version: executions, outcomes, durations", TAG,
        MANAGERS, replies=(Reply(200, "The statistics.", {"$ref": "#/components/schemas/AgentStats"}),),
    ),
)
