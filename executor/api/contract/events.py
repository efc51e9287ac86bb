"""An execution's state changes, live, as Server-Sent Events (executor/api/events.py)."""

from __future__ import annotations

from executor.api.contract.operation import ANY_ROLE, Operation, Reply

TAG = "events"

OPERATIONS = (
    Operation(
        "GET", "/v1/executions/{id}/events", "streamExecutionEvents", "Follow an execution as it runs", TAG,
        ANY_ROLE,
        replies=(Reply(200, "A `text/event-stream`: an `event: status` with the current state at once and at each "
                            "change (data: id, status, error, started_at, finished_at), then one `event: final` "
                            "whose data is the whole Execution, and the stream ends. `: keepalive` comments every "
                            "15 s of silence.", {"type": "string"}, media="text/event-stream"),),
        description="Events are numbered (`id:`); a client reconnecting with `Last-Event-ID` gets the current "
                    "state again, numbered after the id it saw. Whoever may read the execution may follow it.",
    ),
)
