"""An execution's state changes and its stderr lines, live, as Server-Sent Events (executor/api/events.py)."""

from __future__ import annotations

from executor.api.contract.operation import ANY_ROLE, Operation, Reply

TAG = "events"

# One event of the stream. OpenAPI 3.1 has no `itemSchema` (3.2 does): a text/event-stream `schema`
# describes each event, read as an object of its fields (tools such as Schemathesis read it so).
EVENT = {
    "type": "object", "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's number."},
        "event": {"enum": ["status", "stderr", "final"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "`status`: id, status, error, started_at, finished_at; `stderr`: `{line, seq}` "
                                "(one line of the task's stderr, invalid UTF-8 replaced; seq its number in the "
                                "run) or `{dropped}` (how many lines went unsent, over the caps); `final`: the "
                                "Execution."},
        "retry": {"type": "integer", "minimum": 0},
    },
}

OPERATIONS = (
    Operation(
        "GET", "/v1/executions/{id}/events", "streamExecutionEvents", "Follow an execution as it runs", TAG,
        ANY_ROLE,
        replies=(Reply(200, "A `text/event-stream`: an `event: status` with the current state at once and at each "
                            "change (data: id, status, error, started_at, finished_at), an `event: stderr` for "
                            "each line the task writes to stderr while it runs (data: line, seq; or dropped), "
                            "then one `event: final` whose data is the whole Execution, and the stream ends. "
                            "`: keepalive` comments every 15 s of silence.", EVENT, media="text/event-stream"),),
        description="Events are numbered (`id:`); a client reconnecting with `Last-Event-ID` gets the current "
                    "state again, numbered after the id it saw. Whoever may read the execution may follow it. "
                    "Stderr lines are a live view, capped (50 lines a second, bursts of 100, 4 KiB a line, the "
                    "log's size cap in all; lines over a cap are counted in a `dropped` event) and never "
                    "replayed: lines written before the client connected, or while it reconnected, are not "
                    "sent; the whole log is kept with the execution (GET /v1/executions/{id}/logs).",
    ),
)
