"""Webhooks: a service's or operator's endpoint (its default URL and signing secret), and the
deliveries made for an execution with every attempt (docs/marketplace.md)."""

from __future__ import annotations

from executor.api.contract.components import ref
from executor.api.contract.executions import CURSOR, LIMIT
from executor.api.contract.operation import ANY_ROLE, OPERATOR, SERVICE, Operation, Reply, Schema
from executor.webhooks.targets import MAX_URL_LENGTH

TAG = "webhooks"
OWNERS = (SERVICE, OPERATOR)
ENDPOINT = ref("WebhookEndpoint")

SCHEMAS: dict[str, Schema] = {
    "SetWebhookEndpoint": {
        "type": "object", "additionalProperties": False, "required": ["url"],
        "properties": {
            "url": {"type": ["string", "null"], "maxLength": MAX_URL_LENGTH,
                    "description": "an http(s) URL to deliver to (a public address unless the operator allows "
                                   "private ones), or null to remove it"},
        },
    },
}

OPERATIONS = (
    Operation(
        "GET", "/v1/webhooks/endpoint", "getWebhookEndpoint", "The caller's webhook endpoint and signing secret",
        TAG, OWNERS,
        replies=(Reply(200, "The endpoint (made, with no URL and a fresh secret, on first read); not to be cached.",
                       ENDPOINT, headers=("Cache-Control",)),),
    ),
    Operation(
        "PUT", "/v1/webhooks/endpoint", "setWebhookEndpoint", "Set or remove the caller's default webhook URL",
        TAG, OWNERS, body=ref("SetWebhookEndpoint"),
        replies=(Reply(200, "The endpoint, with its URL as normalised; not to be cached.", ENDPOINT,
                       headers=("Cache-Control",)),),
        description="The URL is refused (`request_invalid`, pointer `/url`) when it is not http(s), carries "
                    "credentials or a fragment, or names a private address the operator does not allow.",
        # (No example with a URL: the reference page links to nothing, and a URL in it would read as a link.)
        examples={"remove the default URL": {"url": None}},
    ),
    Operation(
        "POST", "/v1/webhooks/endpoint/rotate", "rotateWebhookSecret", "Replace the signing secret", TAG, OWNERS,
        replies=(Reply(200, "The endpoint with its new secret: every attempt from now on is signed with it, retries "
                            "of older deliveries included; not to be cached.", ENDPOINT,
                       headers=("Cache-Control",)),),
    ),
    Operation(
        "GET", "/v1/executions/{id}/webhooks", "listExecutionWebhooks", "An execution's webhook deliveries",
        TAG, ANY_ROLE,
        query=(LIMIT, CURSOR),
        replies=(Reply(200, "A page of the deliveries made for the execution, oldest first, with every attempt "
                            "(never a secret).", ref("WebhookDeliveries")),),
        description="Whoever may read the execution may read its deliveries.",
    ),
    Operation(
        "POST", "/v1/executions/{id}/webhooks/{delivery_id}/resend", "resendExecutionWebhook",
        "Send a failed delivery again", TAG, OWNERS,
        replies=(Reply(200, "The delivery, pending again and due now, with every attempt it keeps.",
                       ref("WebhookDelivery")),),
        problems=("conflict",),
        description="For a delivery that is `failed` (its attempts used up): it is queued again, due now, for one "
                    "more attempt, numbered after the ones it keeps; should that attempt fail, it is failed again. "
                    "Same id, same payload (webhook-id unchanged), signed with the endpoint's current secret. "
                    "An operator resends any delivery, a service those made to its own endpoint (any other id is "
                    "`not_found`), of an execution it may read. `conflict`: the delivery is pending or delivered.",
    ),
)
