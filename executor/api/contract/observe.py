"""Operators' view of a running instance: a JSON status and Prometheus metrics. A worker
process serves these too (with health and readiness), beside no other route."""

from __future__ import annotations

from executor.api.contract.components import ref
from executor.api.contract.operation import OPERATOR, Operation, Reply

TAG = "observability"
OPERATORS = (OPERATOR,)

OPERATIONS = (
    Operation(
        "GET", "/v1/status", "getStatus", "What this instance is doing", TAG, OPERATORS,
        replies=(Reply(200, "Its instance id, its worker's running tasks, its pool of pre-started containers.",
                       ref("Status")),),
    ),
    Operation(
        "GET", "/metrics", "getMetrics", "Prometheus metrics", TAG, OPERATORS,
        replies=(Reply(200, "The Prometheus text exposition format (0.0.4).", {"type": "string"},
                       media="text/plain; version=0.0.4"),),
        description="Prometheus sends the operator token as its bearer token.",
    ),
)
