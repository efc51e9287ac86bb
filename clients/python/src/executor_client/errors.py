"""Every exception the SDK raises, as one tree:

    ExecutorError                   the base of all of them
    ├── ApiError                    the service answered with an error status (an RFC 9457 problem)
    │   └── InputInvalid, RateLimited, EntitlementUsedUp, …   one per problem slug (problems.py, generated)
    ├── NetworkError                the request did not get an answer (connect, read, closed connection)
    │   └── RequestTimeout          … because a timeout ran out (also a builtin TimeoutError)
    ├── RunTimeout                  run() gave up waiting for a final state (also a TimeoutError)
    ├── UnexpectedResponse          a 2xx answer that is not what the contract says (not JSON, …)
    ├── WebhookVerificationError    a webhook delivery whose signature does not hold (also a ValueError)
    └── KeySetError                 a JWK or JWK set that is not an acceptable Ed25519 key (also a ValueError)

An `ApiError` is raised after the retries (see README: 429 and 5xx are retried first).
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "urn:executor:problem:"


class ExecutorError(Exception):
    """The base of every error this SDK raises."""


class ApiError(ExecutorError):
    """A non-2xx answer. `problem` is the RFC 9457 body (or one made from a non-JSON body, its text in
    `detail`); `type` its problem type URN or None; `slug` the part after `urn:executor:problem:`;
    `retry_after` the seconds of `Retry-After` (429, 503), or None."""

    SLUG: ClassVar[str | None] = None  # the slug a subclass stands for

    def __init__(self, status: int, problem: dict[str, Any], *, retry_after: float | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.problem = problem
        self.retry_after = retry_after
        self.headers = headers or {}
        label = self.slug or problem.get("title")
        super().__init__(f"{status} {label}: {self.detail}" if label else f"{status}: {self.detail}")

    @property
    def type(self) -> str | None:
        value = self.problem.get("type")
        return value if isinstance(value, str) else None

    @property
    def slug(self) -> str | None:
        """The stable part of the problem type (`forbidden`, `input_invalid`, …); docs/errors.md lists them."""
        if self.type and self.type.startswith(PROBLEM_TYPE_PREFIX):
            return self.type[len(PROBLEM_TYPE_PREFIX):]
        return None

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or self.problem.get("title") or "")

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The violations (`{pointer, detail}`) of a 400/422, else empty."""
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class NetworkError(ExecutorError):
    """No answer: the connection could not be made, broke, or was closed before the answer (after the retries)."""


class RequestTimeout(NetworkError, TimeoutError):
    """A connect, read, write or pool timeout ran out (after the retries)."""


class RunTimeout(ExecutorError, TimeoutError):
    """`run()` reached the caller's timeout before the execution was final; `execution` is the last record seen."""

    def __init__(self, message: str, execution: Any) -> None:
        super().__init__(message)
        self.execution = execution


class UnexpectedResponse(ExecutorError):
    """A success status with a body the contract does not allow (not JSON where JSON is promised)."""

    def __init__(self, message: str, *, status: int, body: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class WebhookVerificationError(ExecutorError, ValueError):
    """A webhook delivery that is not what its Standard Webhooks headers claim."""


class KeySetError(ExecutorError, ValueError):
    """A JWK or JWK set that is not an acceptable Ed25519 public key; the message says why."""
