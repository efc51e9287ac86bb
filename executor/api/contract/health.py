"""Liveness and readiness, for load balancers and orchestrators: public, no token."""

from __future__ import annotations

from executor.api.contract.components import ref
from executor.api.contract.operation import Operation, Reply

TAG = "health"
READINESS = ref("Readiness")

OPERATIONS = (
    Operation(
        "GET", "/healthz", "getHealth", "Whether the process answers", TAG, None,
        replies=(Reply(200, "Alive.", ref("Health")),),
    ),
    Operation(
        "GET", "/readyz", "getReadiness", "Whether every dependency answers", TAG, None,
        replies=(Reply(200, "Ready: PostgreSQL, Redis and the engine each answered within 2 s.", READINESS),
                 Reply(503, "Not ready: `checks` says which dependency is down.", READINESS)),
    ),
)
