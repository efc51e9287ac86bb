"""Our Standard Webhooks signatures against the spec's reference implementation (the
`standardwebhooks` package, used here only), both ways."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from executor.webhooks import signing
from executor.webhooks.signing import WebhookVerificationError

BODY = b'{"type":"execution.completed","timestamp":"2024-01-01T00:00:00Z","data":{"id":"e1"}}'
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != signing.new_secret()


def test_the_spec_example_signature() -> None:
    # The example of the Standard Webhooks specification (spec/standard-webhooks.md).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_our_signature_passes_the_reference_verifier() -> None:
    secret = signing.new_secret()
    headers = signing.headers(secret, MSG_ID, int(time.time()), BODY)
    assert headers["content-type"] == "application/json"
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_the_reference_signature_passes_our_verifier() -> None:
    secret = signing.new_secret()
    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign(MSG_ID, now, BODY.decode())
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    signing.verify(secret, headers, BODY)


def test_header_names_are_case_insensitive() -> None:
    secret = signing.new_secret()
    headers = {k.title(): v for k, v in signing.headers(secret, MSG_ID, int(time.time()), BODY).items()}
    assert "Webhook-Signature" in headers
    signing.verify(secret, headers, BODY)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_tampering_is_refused_by_both_verifiers(tamper: str) -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers(secret, MSG_ID, now, BODY)
    body, check_secret = BODY, secret
    if tamper == "body":
        body = BODY.replace(b"e1", b"e2")
    elif tamper == "id":
        headers["webhook-id"] = MSG_ID + "x"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    else:
        check_secret = signing.new_secret()
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        signing.verify(check_secret, headers, body)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(check_secret).verify(body, headers)


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_outside_the_tolerance_is_refused_either_way(offset: int) -> None:
    secret = signing.new_secret()
    now = time.time()
    headers = signing.headers(secret, MSG_ID, int(now) + offset, BODY)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        signing.verify(secret, headers, BODY, now=now)
    signing.verify(secret, headers, BODY, now=now, tolerance_s=400)


def test_an_old_message_is_refused_with_the_default_tolerance() -> None:
    secret = signing.new_secret()
    headers = signing.headers(secret, MSG_ID, int(time.time()) - 3600, BODY)
    with pytest.raises(WebhookVerificationError):
        signing.verify(secret, headers, BODY)


def test_one_valid_signature_among_several_is_enough() -> None:
    # What a receiver sees while a sender rotates its secret: old and new signatures side by side.
    old, new = signing.new_secret(), signing.new_secret()
    now = int(time.time())
    valid = signing.sign(new, MSG_ID, now, BODY)
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(now),
               "webhook-signature": f"v1a,ignored v1,{'A' * 44} {signing.sign(old, MSG_ID, now, BODY)} {valid}"}
    signing.verify(new, headers, BODY)
    standardwebhooks.Webhook(new).verify(BODY, headers)
    headers["webhook-signature"] = f"v1,{'A' * 44} {signing.sign(old, MSG_ID, now, BODY)}"
    with pytest.raises(WebhookVerificationError):
        signing.verify(new, headers, BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    secret = signing.new_secret()
    headers = signing.headers(secret, MSG_ID, int(time.time()), BODY)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="missing"):
        signing.verify(secret, headers, BODY)


def test_a_non_numeric_timestamp_is_refused() -> None:
    secret = signing.new_secret()
    headers = signing.headers(secret, MSG_ID, int(time.time()), BODY)
    headers["webhook-timestamp"] = "soon"
    with pytest.raises(WebhookVerificationError, match="integer"):
        signing.verify(secret, headers, BODY)


def test_message_is_the_recommended_shape() -> None:
    body = signing.message("execution.completed", {"id": "e1"}, datetime(2024, 1, 1, tzinfo=UTC))
    assert json.loads(body) == {"type": "execution.completed", "timestamp": "2024-01-01T00:00:00Z",
                                "data": {"id": "e1"}}
