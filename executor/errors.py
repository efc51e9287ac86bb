"""The one exception hierarchy of executor.

    ExecutorError
    ├── ConfigurationError          bad settings; the process refuses to start
    ├── DependencyUnavailable       PostgreSQL, Redis or Docker did not answer in time
    └── Problem                     rendered by the API as RFC 9457 application/problem+json
        ├── MalformedRequest        400 malformed_request
        ├── Unauthenticated         401 unauthenticated
        ├── Forbidden               403 forbidden
        ├── EntitlementMissing      403 entitlement_missing   (and _expired, _revoked, _used_up)
        ├── NotFound                404 not_found
        ├── Conflict                409 conflict
        ├── VersionWithdrawn        410 agent_version_withdrawn
        ├── ExecutionBodiesDeleted  410 execution_bodies_deleted (past EXECUTOR_RETENTION_S; the receipt stays)
        ├── ReceiptUnavailable      409 receipt_unavailable (the execution is not final yet)
        ├── PayloadTooLarge         413 payload_too_large
        ├── RequestInvalid          422 request_invalid   (fields of a well-formed body)
        ├── InputInvalid            422 input_invalid     (input vs. the agent's input schema)
        ├── SchemaInvalid           422 schema_invalid    (an agent's schema is not a valid schema)
        ├── LimitExceeded           422 limit_exceeded    (a limit above the operator's maximum)
        ├── ImageNotFound           422 image_not_found
        ├── ModuleInvalid           422 module_invalid    (an uploaded WASM module is refused)
        ├── RuntimeUnavailable      422 runtime_unavailable (an OCI runtime not allowed or not on the engine)
        ├── AttestationInvalid      422 attestation_invalid (a witness signature that does not hold)
        ├── IdempotencyKeyReused    422 idempotency_key_reused (the same key with another body)
        ├── RateLimited             429 rate_limited (Retry-After, RateLimit headers)
        ├── TooManyLive             429 too_many_live_executions (the per-user cap)
        ├── QueueFull               503 queue_full (too many jobs queued, or too long a wait: shedding.py)
        ├── QueueUnavailable        503 queue_unavailable (Redis, the job queue, did not answer)
        └── WasmRuntimeUnavailable  503 wasm_runtime_unavailable (the WASM runtime image cannot be built here)

A problem's `type` is `urn:executor:problem:<slug>`; the slugs are stable API.
"""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE_PREFIX = "urn:executor:problem:"


class ExecutorError(Exception):
    """Base of every error executor raises on purpose."""


class ConfigurationError(ExecutorError):
    pass


class DependencyUnavailable(ExecutorError):
    pass


class Problem(ExecutorError):
    slug = "internal_error"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_PREFIX + self.slug

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class MalformedRequest(Problem):
    slug, status, title = "malformed_request", 400, "Malformed request"


class Unauthenticated(Problem):
    slug, status, title = "unauthenticated", 401, "Missing or invalid bearer token"


class Forbidden(Problem):
    slug, status, title = "forbidden", 403, "Not allowed for this role"


class NotFound(Problem):
    slug, status, title = "not_found", 404, "Not found"


class Conflict(Problem):
    slug, status, title = "conflict", 409, "Conflict"


class PayloadTooLarge(Problem):
    slug, status, title = "payload_too_large", 413, "Request body too large"


class RequestInvalid(Problem):
    slug, status, title = "request_invalid", 422, "Invalid request fields"


class InputInvalid(Problem):
    slug, status, title = "input_invalid", 422, "Input does not match the agent's input schema"


class SchemaInvalid(Problem):
    slug, status, title = "schema_invalid", 422, "Not a valid JSON Schema (Draft 2020-12)"


class LimitExceeded(Problem):
    slug, status, title = "limit_exceeded", 422, "A limit is above the operator's maximum"


class ImageNotFound(Problem):
    slug, status, title = "image_not_found", 422, "Image not present on the engine"


class ModuleInvalid(Problem):
    slug, status, title = "module_invalid", 422, "The WebAssembly module is refused"


class RuntimeUnavailable(Problem):
    slug, status, title = "runtime_unavailable", 422, "The OCI runtime is not allowed or not on the engine"


class ReceiptUnavailable(Problem):
    slug, status, title = "receipt_unavailable", 409, "The execution has no receipt yet: it is not final"


class AttestationInvalid(Problem):
    slug, status, title = "attestation_invalid", 422, "The attestation does not verify"


class EntitlementMissing(Problem):
    slug, status, title = "entitlement_missing", 403, "No entitlement to run this agent"


class EntitlementExpired(Problem):
    slug, status, title = "entitlement_expired", 403, "The entitlement to run this agent has expired"


class EntitlementRevoked(Problem):
    slug, status, title = "entitlement_revoked", 403, "The entitlement to run this agent was revoked"


class EntitlementUsedUp(Problem):
    slug, status, title = "entitlement_used_up", 403, "The entitlement to run this agent has no use left"


class VersionWithdrawn(Problem):
    slug, status, title = "agent_version_withdrawn", 410, "The agent version is withdrawn"


class ExecutionBodiesDeleted(Problem):
    slug, status, title = "execution_bodies_deleted", 410, "The execution's bodies were deleted after its retention"


class IdempotencyKeyReused(Problem):
    slug, status, title = "idempotency_key_reused", 422, "The Idempotency-Key was used for another request"


class Throttled(Problem):
    """A refusal that says when to come back (Retry-After) and may carry more headers."""

    def __init__(self, detail: str | None = None, *, retry_after_s: float = 1.0,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.headers = headers or {}


class RateLimited(Throttled):
    slug, status, title = "rate_limited", 429, "Too many requests"


class TooManyLive(Throttled):
    slug, status, title = "too_many_live_executions", 429, "Too many executions pending or running"


class QueueFull(Throttled):
    slug, status, title = "queue_full", 503, "The job queue is full"


class QueueUnavailable(Problem):
    slug, status, title = "queue_unavailable", 503, "The job queue is unavailable"


class WasmRuntimeUnavailable(Problem):
    """The deployment's images folder has no buildable `wasm` image: the operator's to fix."""

    slug, status, title = "wasm_runtime_unavailable", 503, "The WASM runtime image is unavailable"
