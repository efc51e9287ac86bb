"""Executions: submit, read, list, cancel, and the raw bytes a receipt hashes."""

from __future__ import annotations

from executor.api.contract.operation import ANY_ROLE, Operation, Param, Reply, Schema
from executor.records.executions import Status
from executor.records.principals import DEFAULT_PRIORITY, PRIORITIES

MAX_PAGE = 100  # every list: `limit` from 1 to this (422 above), default 50

TAG = "executions"
EXECUTION = {"$ref": "#/components/schemas/Execution"}
RATE_HEADERS = ("RateLimit-Policy", "RateLimit")

LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
              f"How many items per page, 1 to {MAX_PAGE}.")
CURSOR = Param("cursor", {"type": "string", "minLength": 1, "maxLength": 512},
               "The `next_cursor` of the previous page; absent for the first page.")
WAIT = Param("wait", {"type": "number", "minimum": 0},
             "Seconds to wait for the execution to end before answering (up to EXECUTOR_MAX_WAIT_S, "
             "60 by default; a larger value is refused).")

SCHEMAS: dict[str, Schema] = {
    "Limits": {
        "type": "object",
        "additionalProperties": False,
        "description": "Resource limits; each at most the operator's maximum (else `limit_exceeded`).",
        "properties": {
            "memory_mb": {"type": "integer", "minimum": 6},
            "cpus": {"type": "number", "minimum": 0.01},
            "pids": {"type": "integer", "minimum": 1},
            "timeout_s": {"type": "number", "minimum": 0.1},
        },
    },
    "SubmitExecution": {
        "type": "object",
        "additionalProperties": False,
        "required": ["agent_id", "input"],
        "properties": {
            "agent_id": {"type": "string", "description": "the agent's id"},
            "version": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1,
                        "description": "a version number, an integer from 1 (default: the newest runnable)"},
            "input": {"description": "The task's input: any JSON the agent's input schema accepts."},
            "limits": {"anyOf": [{"$ref": "#/components/schemas/Limits"}, {"type": "null"}]},
            "webhook_url": {"type": ["string", "null"], "maxLength": 2048,
                            "description": "a URL string (services and operators only)"},
            "on_behalf_of": {"type": ["string", "null"], "minLength": 1, "maxLength": 200,
                             "description": "a user's subject, a non-empty string (services and operators only)"},
            "priority": {"type": "string", "enum": list(PRIORITIES),
                         "description": f"its class in the job queue ({DEFAULT_PRIORITY} when absent): workers "
                                        "take high first, then normal, then "
                                        "low, without starving any; under overload low is refused first. Which "
                                        "classes a token may use: its `priorities`"},
        },
    },
}

SUBMIT_EXAMPLE = {"agent_id": "0b5c1a52-6f0e-4c8e-9a55-2f1d8f7e0c11", "input": {"text": "hello world"},
                  "limits": {"timeout_s": 5}, "on_behalf_of": "alice"}

OPERATIONS = (
    Operation(
        "POST", "/v1/executions", "submitExecution", "Run an agent on an input", TAG, ANY_ROLE,
        body={"$ref": "#/components/schemas/SubmitExecution"},
        query=(WAIT,),
        idempotent=True,
        replies=(
            Reply(201, "Accepted and already final (within ?wait).", EXECUTION,
                  headers=("Location", "Idempotent-Replayed", *RATE_HEADERS)),
            Reply(202, "Accepted; follow Location (or GET with ?wait) for the result.", EXECUTION,
                  headers=("Location", "Idempotent-Replayed", *RATE_HEADERS)),
        ),
        problems=("forbidden", "input_invalid", "limit_exceeded", "entitlement_missing", "entitlement_expired",
                  "entitlement_revoked", "entitlement_used_up", "agent_version_withdrawn", "conflict",
                  "rate_limited", "too_many_live_executions", "queue_full", "queue_unavailable", "not_found"),
        description="A user runs agents they hold an entitlement to; a service may submit on behalf of a "
                    "user (taking one use of the user's entitlement) or on its own account.",
        examples={"on behalf of a user": SUBMIT_EXAMPLE},
    ),
    Operation(
        "GET", "/v1/executions", "listExecutions", "List executions, newest first", TAG, ANY_ROLE,
        query=(LIMIT, CURSOR,
               Param("status", {"type": "string", "enum": [s.value for s in Status]}, "Only those in this state."),
               Param("agent_id", {"type": "string", "minLength": 1}, "Only those of this agent."),
               Param("user", {"type": "string", "minLength": 1, "maxLength": 200}, "Only this user's."),
               Param("created_since", {"type": "string", "format": "date-time"},
                     "Only those created at or after this RFC 3339 instant (with its offset)."),
               Param("created_before", {"type": "string", "format": "date-time"},
                     "Only those created strictly before this instant: with `created_since`, a half-open "
                     "window, so consecutive windows neither miss nor repeat one.")),
        problems=("forbidden",),
        replies=(Reply(200, "A page of the executions the caller may see.",
                       {"$ref": "#/components/schemas/ExecutionPage"}),),
        description="An operator sees every execution, a service its own and its users', a user their own.",
    ),
    Operation(
        "GET", "/v1/executions/{id}", "getExecution", "Read an execution", TAG, ANY_ROLE,
        query=(WAIT,),
        replies=(Reply(200, "The execution record (final once ?wait saw it end).", EXECUTION),),
    ),
    Operation(
        "GET", "/v1/executions/{id}/logs", "getExecutionLog", "The task's log (stderr)", TAG, ANY_ROLE,
        replies=(Reply(200, "The log as captured, up to its cap.", {"type": "string"},
                       media="text/plain"),),
        problems=("execution_bodies_deleted",),
    ),
    Operation(
        "GET", "/v1/executions/{id}/input", "getExecutionInput", "The exact bytes the task read on stdin",
        TAG, ANY_ROLE,
        replies=(Reply(200, "The receipt's input_sha256 is of these bytes.", {}),),
        problems=("execution_bodies_deleted",),
    ),
    Operation(
        "GET", "/v1/executions/{id}/stdout", "getExecutionStdout", "The task's stdout as read", TAG, ANY_ROLE,
        replies=(Reply(200, "The receipt's output_sha256 is of these bytes.",
                       {"type": "string", "contentMediaType": "application/octet-stream"},
                       media="application/octet-stream"),),
        problems=("execution_bodies_deleted",),
    ),
    Operation(
        "GET", "/v1/executions/{id}/egress", "getExecutionEgress", "What the task sent through the egress gateway",
        TAG, ANY_ROLE,
        replies=(Reply(200, "Every request, forwarded or refused, in order (no header, no body), and the digest "
                            "its receipt binds; data is null until the execution is final, and for an agent "
                            "without egress.", {"$ref": "#/components/schemas/ExecutionEgress"}),),
    ),
    Operation(
        "POST", "/v1/executions/{id}/cancel", "cancelExecution", "Cancel an execution", TAG, ANY_ROLE,
        replies=(Reply(200, "Final (cancelled, or it had already ended).", EXECUTION),
                 Reply(202, "Cancelling; the task is being stopped.", EXECUTION)),
    ),
)
