"""Standard Webhooks (https://www.standardwebhooks.com/): secrets, signatures, verification.

A message is signed as HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"` with the
key the `whsec_` secret encodes; the signature header may carry several space-separated
`v1,<base64>` entries (a receiver accepts any one), which is what lets a secret be rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32  # the spec allows 24 to 64
_VERSION = "v1"


class WebhookVerificationError(Exception):
    """A message whose headers are missing, stale or not signed by the secret."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Padding is added because some senders publish unpadded base64 (extra padding is ignored).
        key = base64.b64decode(encoded + "==", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is `whsec_` followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{_VERSION},{base64.b64encode(digest).decode()}"


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Everything a delivery sends besides its body."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def message(event_type: str, data: Any, timestamp: datetime) -> bytes:
    """The body of an event in the spec's recommended shape: `{"type", "timestamp", "data"}`."""
    stamp = timestamp.isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": stamp, "data": data},
                      separators=(",", ":"), ensure_ascii=False).encode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: int = 300,
           now: float | None = None) -> None:
    """Raise WebhookVerificationError unless `body` with these headers was signed by `secret`
    within `tolerance_s` of `now` (either way: a timestamp from the future is refused too)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        # Stale or future messages are refused so a captured message cannot be replayed later.
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    expected = base64.b64decode(sign(secret, msg_id, timestamp, body).partition(",")[2])
    for entry in signatures.split(" "):
        version, _, encoded = entry.partition(",")
        if version != _VERSION:
            continue  # a later scheme (v1a, ...) this side does not know
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return
    raise WebhookVerificationError("no matching signature")
