"""Checking a webhook delivery: Standard Webhooks (https://www.standardwebhooks.com/).

The headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
(space-separated `v1,<base64 HMAC-SHA256>`) sign `{id}.{timestamp}.{body}` with the key
that is the base64 after `whsec_` in the endpoint's secret. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from executor_client.errors import WebhookVerificationError

TOLERANCE_S = 300


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: int = TOLERANCE_S,
                   now: float | None = None) -> Any:
    """The parsed JSON body of a delivery whose signature holds and whose timestamp is within `tolerance_s`
    of `now` (both ways); else WebhookVerificationError. Header names in any case; any one of several
    signatures (a rotated secret) matching is enough."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = (lowered.get(f"webhook-{name}") for name in ("id", "timestamp", "signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not (stamp.isascii() and stamp.isdigit()):
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not whole seconds")
    age = (time.time() if now is None else now) - int(stamp)
    if abs(age) > tolerance_s:
        raise WebhookVerificationError(f"the timestamp is {abs(age):.0f} s in the {'past' if age > 0 else 'future'}"
                                       f", beyond the tolerance of {tolerance_s} s")
    key = _b64decode(secret.removeprefix("whsec_"))
    if not key:
        raise WebhookVerificationError("the secret is not base64 (after whsec_), or empty")
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(_b64decode(value) or b"", expected):
            try:
                return json.loads(body)
            except ValueError as exc:
                raise WebhookVerificationError(f"the signed body is not JSON: {exc}") from None
    raise WebhookVerificationError("no v1 signature matches the body")


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
