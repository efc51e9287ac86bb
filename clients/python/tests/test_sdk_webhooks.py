"""verify_webhook: Standard Webhooks signatures, cross-checked with the reference implementation
(the `standardwebhooks` package signs; where both verify, they agree)."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

import pytest
import standardwebhooks

from executor_client import ExecutorError, WebhookVerificationError, verify_webhook

# --- webhooks -------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
SENT_AT = 1_800_000_000
BODY = json.dumps({"type": "execution.completed", "data": {"id": "e1", "status": "COMPLETED"}}).encode()


def signed(body: bytes = BODY, *, secret: str = SECRET, msg_id: str = "msg_1", at: int = SENT_AT) -> dict[str, str]:
    signature = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_webhook_signed_by_the_reference_verifies() -> None:
    assert verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 10) == json.loads(BODY)


def test_webhook_reference_also_accepts_what_passes_here() -> None:
    # The same delivery, checked by the reference at the current time: both sides agree on the format.
    headers = signed(at=int(datetime.now(UTC).timestamp()))
    assert standardwebhooks.Webhook(SECRET).verify(BODY, headers) == verify_webhook(SECRET, headers, BODY)


def test_webhook_headers_in_any_case() -> None:
    headers = {name.upper() if i % 2 else name.title(): value for i, (name, value) in enumerate(signed().items())}
    assert verify_webhook(SECRET, headers, BODY, now=SENT_AT) == json.loads(BODY)


def test_webhook_one_of_several_signatures_matching_is_enough() -> None:
    headers = signed()
    other = signed(secret="whsec_" + base64.b64encode(b"another key, rotated").decode())["webhook-signature"]
    wrong = f"v1,{base64.b64encode(b'x' * 32).decode()}"
    headers["webhook-signature"] = f"{wrong} {other} v2,abc {headers['webhook-signature']}"
    assert verify_webhook(SECRET, headers, BODY, now=SENT_AT) == json.loads(BODY)


def test_webhook_tampered_body_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify_webhook(SECRET, signed(), BODY.replace(b"COMPLETED", b"FAILED"), now=SENT_AT)


def test_webhook_wrong_secret_is_refused() -> None:
    wrong = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(wrong, signed(), BODY, now=SENT_AT)


def test_webhook_signature_of_another_id_is_refused() -> None:
    headers = signed()
    headers["webhook-id"] = "msg_2"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, BODY, now=SENT_AT)


def test_webhook_timestamp_tolerance_both_ways() -> None:
    assert verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 300) == json.loads(BODY)
    assert verify_webhook(SECRET, signed(), BODY, now=SENT_AT - 300) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError, match="past"):
        verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_webhook(SECRET, signed(), BODY, now=SENT_AT - 301)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 11, tolerance_s=10)


def test_webhook_stale_by_the_clock_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="past"):
        verify_webhook(SECRET, signed(at=int(datetime.now(UTC).timestamp()) - 3600), BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_webhook_missing_header_is_refused(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook(SECRET, headers, BODY, now=SENT_AT)


@pytest.mark.parametrize("stamp", ["", "1.8e9", "-5", "+1800000000", "1_800_000_000", "soon"])
def test_webhook_timestamp_not_whole_seconds_is_refused(stamp: str) -> None:
    headers = {**signed(), "webhook-timestamp": stamp}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, BODY, now=SENT_AT)


def test_webhook_errors_are_value_errors() -> None:
    assert issubclass(WebhookVerificationError, ValueError)


def test_webhook_errors_are_sdk_errors() -> None:
    assert issubclass(WebhookVerificationError, ExecutorError)


def test_webhook_body_signed_but_not_json_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        verify_webhook(SECRET, signed(b"not json"), b"not json", now=SENT_AT)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!", ""])
def test_webhook_bad_secret_is_refused(secret: str) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, signed(), BODY, now=SENT_AT)


def test_webhook_the_reference_refuses_what_is_refused_here() -> None:
    now = int(datetime.now(UTC).timestamp())
    headers = signed(at=now)
    tampered = BODY.replace(b"COMPLETED", b"FAILED")
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, tampered)
