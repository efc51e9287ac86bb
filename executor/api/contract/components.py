"""The response bodies more than one area answers with, as exact JSON Schemas (Draft 2020-12).

Each is read off the code that renders it (the records' `to_dict`, the receipts' bundles and
reports, the handlers' own dicts) and checked end to end against real answers
(tests/api/test_contract_shapes.py). A shape the code fully controls is closed
(`additionalProperties: false`), so that a field added or renamed in the code without the
contract fails the suite; what a caller supplied (an execution's input, a witness's JWK) is not."""

from __future__ import annotations

from typing import Any

from executor.api.contract.operation import Schema
from executor.receipts import dsse
from executor.receipts.statement import FIELDS, OPTIONAL_FIELDS, USAGE_FIELDS
from executor.receipts.verify import HEAD_FIELDS
from executor.records.agents import VERSION_STATUSES
from executor.records.entitlements import EntitlementState
from executor.records.executions import ErrorType, Status

OPERATIONS: tuple[()] = ()


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def closed(properties: dict[str, Any], *, optional: tuple[str, ...] = (), **more: Any) -> Schema:
    """An object with exactly these members, each always present but the `optional` ones."""
    return {"type": "object", "additionalProperties": False,
            "required": [name for name in properties if name not in optional], "properties": properties, **more}


def page_of(item: str) -> Schema:
    return closed({"items": {"type": "array", "items": ref(item)},
                   "next_cursor": {"type": ["string", "null"],
                                   "description": "the next page's `cursor`; null: the last"}})


# The records render instants as RFC 3339 in UTC with a `Z` (records/*.py `_iso`).
INSTANT: Schema = {"type": "string", "format": "date-time"}
MAYBE_INSTANT: Schema = {"type": ["string", "null"], "format": "date-time"}
UUID: Schema = {"type": "string", "format": "uuid"}
COUNT: Schema = {"type": "integer", "minimum": 0}
MAYBE_COUNT: Schema = {"type": ["integer", "null"], "minimum": 0}
SHA256_HEX: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
PARTY: Schema = {"type": "string", "pattern": "^(user|service|operator):",
                 "description": "who, as \"role:subject\""}
# Standard base64 with its padding (what the code emits, and what base64.b64decode(validate=True) reads).
BASE64: Schema = {"type": "string", "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"}
# 32 bytes as unpadded base64url: 43 characters, the last one carrying 4 bits (RFC 7515 §2, canonical).
B64URL_32: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$"}

_RECEIPT_KINDS = {"int": "integer", "str": "string", "time": "string", "null": "null", "object": "object"}


def _statement_field(name: str, kinds: tuple[str, ...]) -> Schema:
    schema: Schema = {"type": [_RECEIPT_KINDS[kind] for kind in kinds]}
    if name == "usage":
        schema["properties"] = {field: {"type": ["integer", "null"]} for field in USAGE_FIELDS}
    if "time" in kinds:
        schema["description"] = "RFC 3339, UTC, microseconds, Z"
    return schema


_HEAD_KINDS = {str: "string", int: "integer"}

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        **closed({
            "type": {"type": "string", "pattern": "^urn:executor:problem:[a-z_]+$",
                     "description": "`urn:executor:problem:<slug>`; the slug is stable API (docs/errors.md)"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": ref("Violation")},
            "instance": {"type": "string", "pattern": "^urn:executor:request:",
                         "description": "the request this answers, `urn:executor:request:<id>`: the id in its "
                                        "`X-Request-Id` header and in the service's log lines (docs/logs.md)"},
        }, optional=("errors", "instance")),
        "description": "RFC 9457 problem details (`application/problem+json`).",
    },
    "Violation": {
        **closed({"pointer": {"type": "string", "description": "a JSON Pointer into the body (`/limits/cpus`), "
                                                               "`?name` for a query parameter, `header:Name` for a "
                                                               "header; for a conflict, what it is with"},
                  "detail": {"type": "string"}}),
        "description": "One thing refused, and where.",
    },
    # -- executions ---------------------------------------------------------------------------
    "AppliedLimits": {
        **closed({"memory_mb": {"type": "integer", "minimum": 1}, "cpus": {"type": "number", "exclusiveMinimum": 0},
                  "pids": {"type": "integer", "minimum": 1}, "timeout_s": {"type": "number", "exclusiveMinimum": 0}}),
        "description": "The limits in force: what was asked, the rest from the operator's defaults.",
    },
    "Usage": {
        **closed({name: MAYBE_COUNT for name in
                  ("wall_ms", "cpu_ms", "peak_memory_bytes", "input_bytes", "output_bytes", "fuel_consumed")}),
        "description": "What the task used; null: not measured (or it never ran).",
    },
    "Cost": closed({"currency": {"type": "string"}, "decimals": {"type": "integer", "minimum": 0},
                    "amount": {**COUNT, "description": "in minor units, 10^-decimals of the currency"},
                    "capped": {"type": "boolean", "description": "the agent's cap lowered it"}}),
    "ExecutionError": {
        **closed({"type": {"type": "string", "enum": [e.value for e in ErrorType]},
                  "detail": {"type": "string"},
                  "violations": {"type": "array", "items": ref("Violation"),
                                 "description": "output_invalid: where the output breaks the agent's output schema"}},
                 optional=("violations",)),
        "description": "Why a final execution is not COMPLETED.",
    },
    "Execution": closed({
        "id": UUID,
        "agent_id": UUID,
        "agent_version": {"type": "integer", "minimum": 1},
        "status": {"type": "string", "enum": [s.value for s in Status]},
        "input": {"description": "the input as submitted; null once its retention deleted it"},
        "output": {"description": "the agent's JSON output (COMPLETED), else null"},
        "error": nullable(ref("ExecutionError")),
        "exit_code": {"type": ["integer", "null"]},
        "limits": ref("AppliedLimits"),
        "created_at": INSTANT,
        "started_at": MAYBE_INSTANT,
        "finished_at": MAYBE_INSTANT,
        "usage": ref("Usage"),
        "cost": nullable(ref("Cost")),
        "pooled": {"type": ["boolean", "null"], "description": "ran in a pre-started container; null: never ran"},
        "oci_runtime": {"type": ["string", "null"]},
        "owner": PARTY,
        "service": {"type": ["string", "null"], "description": "the marketplace service it belongs to"},
        "submitted_by": {"type": ["string", "null"], "description": "who sent it, when not its owner"},
        "entitlement_id": {"type": ["string", "null"], "format": "uuid"},
        "webhook_url": {"type": ["string", "null"]},
        "worker": {"type": ["string", "null"]},
        "attempts": {**COUNT, "description": "how many times it was started"},
        "priority": {"type": "string", "enum": ["high", "normal", "low"], "description": "its class in the job queue"},
        "bodies_deleted_at": {**MAYBE_INSTANT, "description": "when its input, output, stdout and log were deleted "
                                                              "(EXECUTOR_RETENTION_S); null: they are kept"},
        "egress": {"anyOf": [ref("EgressDigest"), {"type": "null"}],
                   "description": "what it sent through the egress gateway, as its receipt binds it; "
                                  "null: its agent declared no egress"},
    }, optional=("bodies_deleted_at",)),
    "ExecutionEgress": closed({
        "execution_id": UUID,
        "final": {"type": "boolean"},
        "data": {"anyOf": [{"type": "array", "items": ref("EgressEntry")}, {"type": "null"}]},
        "digest": {"anyOf": [ref("EgressDigest"), {"type": "null"}]},
    }),
    "EgressEntry": {
        "type": "object",
        "required": ["seq", "method", "path", "status", "bytes_out", "bytes_in", "duration_ms", "outcome"],
        "properties": {
            "seq": COUNT, "method": {"type": "string"}, "upstream": {"type": ["string", "null"]},
            "path": {"type": "string"}, "status": {"type": "integer"}, "bytes_out": COUNT, "bytes_in": COUNT,
            "duration_ms": COUNT, "outcome": {"type": "string", "enum": ["forwarded", "refused", "failed"]},
            "reason": {"type": ["string", "null"]},
        },
        "description": "One request of a task through the egress gateway: never a header or a body.",
    },
    "EgressDigest": closed({
        "sha256": SHA256_HEX, "requests": COUNT, "bytes_out": COUNT, "bytes_in": COUNT,
    }),
    "ExecutionPage": page_of("Execution"),
    # -- agents -------------------------------------------------------------------------------
    "AgentPricing": closed({
        "currency": {"type": "string"}, "decimals": {"type": "integer", "minimum": 0},
        **{rate: COUNT for rate in ("per_call", "per_cpu_second", "per_mb_second", "per_peak_mb",
                                    "per_egress_request")},
        "cap": MAYBE_COUNT,
    }),
    "Agent": {
        **closed({
            "id": UUID,
            "name": {"type": "string", "minLength": 1},
            "kind": {"type": "string", "enum": ["container", "wasm"]},
            "version": {"type": "integer", "minimum": 1},
            "image": {"type": "string", "description": "as registered (WASM: the runtime image)"},
            "image_digest": {"type": ["string", "null"],
                             "description": "the image id it is pinned to; null: a WASM version awaiting its module"},
            "command": {"type": ["array", "null"], "items": {"type": "string"}},
            "input_schema": {"type": ["object", "boolean"]},
            "output_schema": {"type": ["object", "boolean"]},
            "limits": ref("AppliedLimits"),
            "pool": {"anyOf": [closed({"min": COUNT, "max": COUNT}), {"type": "null"}]},
            "description": {"type": ["string", "null"]},
            "pricing": nullable(ref("AgentPricing")),
            "runtime": {"type": ["string", "null"], "description": "the OCI runtime asked for; null: the default"},
            "egress": {"anyOf": [{"type": "array", "items": ref("EgressUpstream")}, {"type": "null"}],
                       "description": "its upstreams through the egress gateway; null: none"},
            "egress_limits": {"anyOf": [closed({"requests": COUNT, "bytes_out": COUNT, "bytes_in": COUNT,
                                                "time_s": {"type": "number"}}), {"type": "null"}]},
            "status": {"type": "string", "enum": list(VERSION_STATUSES)},
            "status_changed_at": MAYBE_INSTANT,
            "created_at": INSTANT,
            "module_sha256": {"anyOf": [SHA256_HEX, {"type": "null"}], "description": "WASM only"},
            "fuel": {**MAYBE_COUNT, "description": "WASM only"},
        }, optional=("module_sha256", "fuel")),
        # A WASM version always shows its module and fuel; a container version never does.
        "if": {"properties": {"kind": {"const": "wasm"}}},
        "then": {"required": ["module_sha256", "fuel"]},
        "else": {"properties": {"module_sha256": False, "fuel": False}},
        "description": "An agent at one of its immutable versions.",
    },
    "AgentPage": page_of("Agent"),
    "AgentStats": closed({
        "agent_id": UUID,
        "name": {"type": "string"},
        "versions": {"type": "array", "items": closed({
            "version": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": list(VERSION_STATUSES)},
            "runtime": {"type": ["string", "null"]},
            "ran_under": {"type": "object", "additionalProperties": COUNT,
                          "description": "OCI runtime -> how many executions ran under it"},
            "executions": COUNT, "live": COUNT, "final": COUNT,
            "by_status": closed({status: COUNT for status in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")}),
            "platform_errors": COUNT,
            "success_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "duration_ms": closed({"p50": {"type": ["number", "null"]}, "p95": {"type": ["number", "null"]}}),
            "latency_ms": closed({"p50": {"type": ["number", "null"]}, "p95": {"type": ["number", "null"]}}),
        })},
        "hourly": {"type": "array", "minItems": 24, "maxItems": 24, "items": closed({
            "start": {**INSTANT, "description": "the hour's start, UTC"},
            "executions": {**COUNT, "description": "accepted in that hour, any version"},
            "completed": {**COUNT, "description": "of those, ended COMPLETED"},
            "failed": {**COUNT, "description": "of those, ended FAILED or TIMEOUT"},
        }), "description": "executions per hour over the last 24 hours, oldest first, the current hour last;"
                           " an hour without any is there with zeros"},
    }, optional=("hourly",)),
    # -- entitlements -------------------------------------------------------------------------
    "Entitlement": closed({
        "id": UUID,
        "user": {"type": "string"},
        "agent_id": UUID,
        "state": {"type": "string", "enum": [s.value for s in EntitlementState]},
        "granted_by": PARTY,
        "expires_at": MAYBE_INSTANT,
        "uses": {**MAYBE_COUNT, "description": "granted; null: unlimited"},
        "uses_remaining": MAYBE_COUNT,
        "uses_consumed": COUNT,
        "created_at": INSTANT,
        "updated_at": INSTANT,
        "revoked_at": MAYBE_INSTANT,
    }),
    "EntitlementPage": page_of("Entitlement"),
    # -- receipts, keys and the log -----------------------------------------------------------
    "DsseEnvelope": closed({
        "payloadType": {"type": "string"},
        "payload": BASE64,
        "signatures": {"type": "array", "minItems": 1,
                       "items": closed({"keyid": {"type": "string", "minLength": 1}, "sig": BASE64})},
    }, description="A DSSE v1 envelope: signatures over the PAE of payloadType and payload."),
    "Jwk": closed({"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "x": B64URL_32,
                   "kid": {**B64URL_32, "description": "the key's RFC 7638 thumbprint"},
                   "alg": {"const": "EdDSA"}, "use": {"const": "sig"}},
                  description="An Ed25519 public key (RFC 8037)."),
    "PublicJwk": {
        "type": "object", "required": ["kty", "crv", "x"],
        "properties": {"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "x": B64URL_32,
                       "kid": {"type": "string", "description": "if given, the key's RFC 7638 thumbprint"},
                       "alg": {"enum": ["EdDSA", "Ed25519"]}, "use": {"const": "sig"},
                       "d": {"not": {}, "description": "a private key is refused (and must be treated as leaked)"}},
        "description": "An Ed25519 public key as a JWK (RFC 8037); other members are kept as given.",
    },
    "KeySet": closed({"keys": {"type": "array", "items": ref("Jwk")}},
                     description="The published, unretired signing keys (a JWK set, RFC 7517)."),
    "SignedLogHead": {"allOf": [ref("DsseEnvelope"),
                                {"properties": {"payloadType": {"const": dsse.TREE_HEAD_PAYLOAD_TYPE}}}],
                      "description": "The log's head (a TreeHeadStatement), signed."},
    "InclusionProof": closed({"log_index": COUNT, "tree_size": {"type": "integer", "minimum": 1},
                              "hashes": {"type": "array", "items": SHA256_HEX}},
                             description="RFC 9162 audit path of leaf log_index in the tree of tree_size leaves."),
    "ConsistencyProof": closed({"from": {"type": "integer", "minimum": 1}, "to": {"type": "integer", "minimum": 1},
                                "hashes": {"type": "array", "items": SHA256_HEX}},
                               description="RFC 9162 proof that the tree of `to` leaves extends that of `from`."),
    "ReceiptBundle": closed({
        "envelope": {"allOf": [ref("DsseEnvelope"),
                               {"properties": {"payloadType": {"const": dsse.RECEIPT_PAYLOAD_TYPE}}}]},
        "witnesses": {"type": "array", "items": closed({
            "keyid": {"type": "string"}, "public_key": ref("PublicJwk"), "attested_by": PARTY,
            "attested_at": INSTANT})},
        "inclusion_proof": ref("InclusionProof"),
        "tree_head": ref("SignedLogHead"),
    }, description="A receipt with every signature on it, and its inclusion proof against a signed head."),
    "ReceiptStatement": closed({
        **{name: _statement_field(name, kinds) for name, kinds in FIELDS.items()},
        "egress": {**ref("EgressDigest"), "description": "only when the agent declared egress (docs/receipts.md)"},
    }, optional=tuple(OPTIONAL_FIELDS), description="What a receipt says (docs/receipts.md)."),
    "TreeHeadStatement": closed({name: {"type": _HEAD_KINDS[kind]} for name, kind in HEAD_FIELDS.items()}),
    "VerifyReport": closed({
        "valid": {"type": "boolean"},
        "failures": {"type": "array", "items": closed({
            "reason": {"type": "string", "pattern": "^[a-z0-9_]+$", "description": "stable (docs/receipts.md)"},
            "detail": {"type": "string"}})},
        "signatures": {"type": "array", "items": closed({
            "keyid": {"type": "string"}, "signer": {"enum": ["executor", "witness"]},
            "trusted": {"type": "boolean"}, "holds": {"type": ["boolean", "null"]}, "detail": {"type": "string"}})},
        "receipt": nullable(ref("ReceiptStatement")),
        "tree_head": nullable(ref("TreeHeadStatement")),
    }),
    # -- webhooks -----------------------------------------------------------------------------
    "WebhookEndpoint": closed({
        "url": {"type": ["string", "null"], "description": "the default URL; null: none"},
        "secret": {"type": "string", "pattern": "^whsec_", "description": "Standard Webhooks signing secret"},
        "created_at": INSTANT, "updated_at": INSTANT,
    }),
    "WebhookDelivery": closed({
        "id": UUID, "execution_id": UUID,
        "event_type": {"enum": [f"execution.{s.value.lower()}" for s in Status if s.is_final]},
        "url": {"type": "string"},
        "status": {"enum": ["pending", "delivered", "failed"]},
        "attempt_count": COUNT,
        "next_attempt_at": MAYBE_INSTANT,
        "created_at": INSTANT,
        "delivered_at": MAYBE_INSTANT,
        "last_error": {"type": ["string", "null"]},
        "payload_sha256": SHA256_HEX,
        "payload_bytes": COUNT,
        "attempts": {"type": "array", "items": closed({
            "attempt": {"type": "integer", "minimum": 1}, "started_at": INSTANT, "duration_ms": COUNT,
            "status_code": {"type": ["integer", "null"]}, "error": {"type": ["string", "null"]}})},
    }),
    "WebhookDeliveries": page_of("WebhookDelivery"),
    # -- images -------------------------------------------------------------------------------
    "Image": closed({
        "id": {"type": "string", "pattern": "^sha256:", "description": "the engine's id; the list's order"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "size": MAYBE_COUNT,
        "created": {"type": ["integer", "null"], "description": "Unix seconds"},
        "used_by_agent_versions": COUNT}),
    "ImageList": closed({
        **page_of("Image")["properties"],
        "buildable": {"type": "array", "items": {"type": "string"},
                      "description": "the images EXECUTOR_IMAGES_DIR holds recipes for"},
    }),
    "ImageBuildResult": closed({"items": {"type": "array", "items": closed({
        "name": {"type": "string"}, "tag": {"type": "string"}, "id": {"type": "string", "pattern": "^sha256:"},
        "cached": {"type": "boolean"}})}}),
    # -- the instance -------------------------------------------------------------------------
    "Status": closed({
        "instance": {"type": "string"},
        "worker": closed({"running": COUNT, "concurrency": COUNT}),
        "pool": {"anyOf": [{"type": "null"}, closed({
            **{name: COUNT for name in ("containers", "closed_shelves", "starting", "shelves", "hits", "misses",
                                        "discarded", "refills")},
            "refill_seconds_total": {"type": "number", "minimum": 0},
            "container_start_seconds": {"type": "number", "minimum": 0}})],
                 "description": "the pre-started containers; null: no pool here"},
        "queue": {"anyOf": [{"type": "null"}, closed({
            "depth": {**COUNT, "description": "jobs accepted and not yet finished (waiting or running)"},
            "oldest_age_s": {"type": ["number", "null"], "minimum": 0,
                             "description": "seconds since the oldest of them was queued; null: none"},
            "classes": closed({name: closed({
                "depth": COUNT, "oldest_age_s": {"type": ["number", "null"], "minimum": 0}})
                for name in ("high", "normal", "low")}, description="the same, per priority class")})],
                  "description": "the job queue all instances share (the /metrics gauges executor_queue_depth and"
                                 " executor_queue_oldest_job_age_seconds); null: Redis did not answer"},
    }),
    "Health": closed({"status": {"const": "ok"}}),
    "Readiness": {
        **closed({"status": {"enum": ["ready", "unavailable"]},
                  "checks": closed({name: {"enum": ["ok", "down"]} for name in ("postgresql", "redis", "docker")})}),
        "if": {"properties": {"status": {"const": "ready"}}},
        "then": {"properties": {"checks": {"additionalProperties": {"const": "ok"}}}},
        "else": {"properties": {"checks": {"not": {"additionalProperties": {"const": "ok"}}}}},
        "description": "200 `ready` when every dependency answers; 503 `unavailable` says which does not.",
    },
}
