"""The Python SDK of the executor API.

    from executor_client import Executor
    with Executor("https://executor.example", token) as api:
        record = api.run(agent_id, {"text": "hello"})

`Executor` (sync) and `AsyncExecutor` (async) have the same methods; models.py has the records
as TypedDicts; errors.py and problems.py the exceptions; receipts verifies receipts offline
(the `verify` extra); verify_webhook checks a webhook delivery. Depends on httpx alone.
"""

from executor_client._async import AsyncExecutor
from executor_client._common import Event, RetryPolicy
from executor_client._sync import Executor
from executor_client.errors import (
    ApiError,
    ExecutorError,
    KeySetError,
    NetworkError,
    RequestTimeout,
    RunTimeout,
    UnexpectedResponse,
    WebhookVerificationError,
)
from executor_client.operations import OPERATIONS
from executor_client.problems import *  # noqa: F403  (one class per problem slug)
from executor_client.problems import PROBLEM_CLASSES
from executor_client.webhooks import verify_webhook

__version__ = "0.1.0"
__all__ = [
    "OPERATIONS",
    "PROBLEM_CLASSES",
    "ApiError",
    "AsyncExecutor",
    "Event",
    "Executor",
    "ExecutorError",
    "KeySetError",
    "NetworkError",
    "RequestTimeout",
    "RetryPolicy",
    "RunTimeout",
    "UnexpectedResponse",
    "WebhookVerificationError",
    "verify_webhook",
]
