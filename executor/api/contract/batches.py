"""Batches: many submissions in one request, each accepted or refused on its own (docs/batches.md)."""

from __future__ import annotations

from executor.api.contract.components import ref
from executor.api.contract.executions import SCHEMAS as EXECUTION_SCHEMAS
from executor.api.contract.executions import SUBMIT_EXAMPLE, TAG, WAIT
from executor.api.contract.openapi import IDEMPOTENCY_KEY
from executor.api.contract.operation import ANY_ROLE, Operation, Reply, Schema

# An item is exactly what POST /v1/executions takes, plus the key that request sends as a header.
_SUBMIT = EXECUTION_SCHEMAS["SubmitExecution"]

SCHEMAS: dict[str, Schema] = {
    "BatchItem": {
        **_SUBMIT,
        "properties": {
            **_SUBMIT["properties"],
            "idempotency_key": {
                **IDEMPOTENCY_KEY.schema,
                "description": "1 to 255 printable ASCII characters: this item's Idempotency-Key, with the "
                               "header's meaning (the same key and item replay its execution; the same key with "
                               "another item is refused, `idempotency_key_reused`)",
            },
        },
        "description": "One submission: the body of POST /v1/executions, and optionally its Idempotency-Key.",
    },
    "SubmitBatch": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "minItems": 1, "items": ref("BatchItem"),
                      "description": "1 to EXECUTOR_MAX_BATCH_ITEMS (100 by default) submissions"},
        },
    },
    "BatchItemResult": {
        "type": "object",
        "additionalProperties": False,
        "required": ["index", "status", "replayed"],
        "properties": {
            "index": {"type": "integer", "minimum": 0, "description": "the item's place in the request, from 0"},
            "status": {"type": "integer", "minimum": 201, "maximum": 599,
                       "description": "the status POST /v1/executions would have answered for this item alone"},
            "execution": ref("Execution"),
            "problem": ref("Problem"),
            "replayed": {"type": "boolean",
                         "description": "the execution an earlier request with this item's key created"},
            "retry_after": {"type": "integer", "minimum": 1,
                            "description": "a throttled item (429, 503): seconds to wait before sending it again"},
        },
        "oneOf": [
            {"required": ["execution"],
             "properties": {"status": {"enum": [201, 202]}, "problem": False, "retry_after": False}},
            {"required": ["problem"],
             "properties": {"status": {"minimum": 400}, "execution": False, "replayed": {"const": False}}},
        ],
        "description": "One item's answer: its execution (201 final, 202 accepted), or the problem that refused it.",
    },
    "BatchResult": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": ref("BatchItemResult"),
                                 "description": "one per item, in the order given"}},
    },
}

OPERATIONS = (
    Operation(
        "POST", "/v1/executions/batch", "submitExecutionBatch", "Run agents on many inputs in one request",
        TAG, ANY_ROLE,
        body=ref("SubmitBatch"),
        query=(WAIT,),
        replies=(Reply(200, "One answer per item, in the order given; each item accepted or refused on its own.",
                       ref("BatchResult")),),
        problems=("request_invalid",),
        description="Each item is what POST /v1/executions takes and is judged as that request would be: its "
                    "own entitlement use, rate-limit tokens and Idempotency-Key (`idempotency_key`). A refused "
                    "item never undoes another. More than EXECUTOR_MAX_BATCH_ITEMS items, or a body that does "
                    "not match the schema, is refused whole (422, nothing accepted). With ?wait=, the items "
                    "that end in time answer 201 with their final record.",
        examples={"two inputs for a user, each with its key": {"items": [
            {**SUBMIT_EXAMPLE, "idempotency_key": "order-1041"},
            {**SUBMIT_EXAMPLE, "input": {"text": "second"}, "idempotency_key": "order-1042"},
        ]}},
    ),
)
