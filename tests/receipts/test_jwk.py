"""Ed25519 JWKs and their RFC 7638 thumbprints, checked with the RFC 8037 Appendix A vectors."""

from __future__ import annotations

import base64
import hashlib

import nacl.signing
import pytest

from executor.receipts.jwk import (
    JwkError,
    from_jwk,
    key_id,
    key_set,
    parse_key_set,
    to_jwk,
)

# RFC 8037 Appendix A.
RFC_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC_JWS_INPUT = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC_JWS_SIGNATURE = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


RFC_KEY = nacl.signing.SigningKey(b64url_decode(RFC_D))
KEY_A = nacl.signing.SigningKey(bytes(range(32))).verify_key
KEY_B = nacl.signing.SigningKey(bytes(range(1, 33))).verify_key


def rfc_jwk(**changes: object) -> dict[str, object]:
    jwk: dict[str, object] = {"kty": "OKP", "crv": "Ed25519", "x": RFC_X}
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


# ── RFC 8037 Appendix A ──


def test_pynacl_key_from_the_rfc_seed_has_the_rfc_public_key() -> None:
    assert bytes(RFC_KEY.verify_key) == b64url_decode(RFC_X)
    assert to_jwk(RFC_KEY.verify_key)["x"] == RFC_X


def test_rfc8037_a3_thumbprint() -> None:
    assert key_id(RFC_KEY.verify_key) == RFC_THUMBPRINT
    # A.3 spells out the hash input: the required members in lexicographic order, no whitespace.
    members = b'{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'
    assert b64url(hashlib.sha256(members).digest()) == RFC_THUMBPRINT


def test_rfc8037_a4_signature_with_the_parsed_key() -> None:
    # A.4: the RFC's JWS signature verifies under the key read from its JWK (and PyNaCl makes the same one).
    key = from_jwk(rfc_jwk())
    signature = b64url_decode(RFC_JWS_SIGNATURE)
    assert key.verify(RFC_JWS_INPUT, signature) == RFC_JWS_INPUT
    assert RFC_KEY.sign(RFC_JWS_INPUT).signature == signature


def test_to_jwk() -> None:
    assert to_jwk(RFC_KEY.verify_key) == {
        "kty": "OKP", "crv": "Ed25519", "x": RFC_X, "kid": RFC_THUMBPRINT, "alg": "EdDSA", "use": "sig",
    }


def test_key_ids_differ_between_keys() -> None:
    assert len({key_id(KEY_A), key_id(KEY_B), key_id(RFC_KEY.verify_key)}) == 3
    assert len(key_id(KEY_A)) == 43 and "=" not in key_id(KEY_A)


# ── from_jwk ──


@pytest.mark.parametrize("key", [RFC_KEY.verify_key, KEY_A, KEY_B])
def test_from_jwk_round_trips(key: nacl.signing.VerifyKey) -> None:
    assert from_jwk(to_jwk(key)) == key


def test_from_jwk_accepts_the_minimal_form_and_both_alg_names() -> None:
    assert from_jwk(rfc_jwk()) == RFC_KEY.verify_key
    assert from_jwk(rfc_jwk(alg="Ed25519", kid=RFC_THUMBPRINT, use="sig", key_ops=["verify"])) == RFC_KEY.verify_key


@pytest.mark.parametrize("data, message", [
    ([RFC_X], "a JWK must be a JSON object, not list"),
    (rfc_jwk(d=RFC_D), 'the JWK has a private part ("d"): refused'),
    (rfc_jwk(kty="EC", d="x"), 'the JWK has a private part ("d")'),  # the leak is reported before anything else
    (rfc_jwk(kty="EC"), "kty must be 'OKP', not 'EC'"),
    (rfc_jwk(kty=None), "kty must be 'OKP', not None"),
    (rfc_jwk(crv="X25519"), "crv must be 'Ed25519', not 'X25519'"),
    (rfc_jwk(crv="Ed448"), "crv must be 'Ed25519', not 'Ed448'"),
    (rfc_jwk(x=None), "the JWK has no x"),
    (rfc_jwk(x=7), "x must be a string, not int"),
    (rfc_jwk(x=RFC_X + "="), "x is not unpadded base64url"),
    (rfc_jwk(x=RFC_X.replace("_", "/")), "x is not unpadded base64url"),
    (rfc_jwk(x=RFC_X[:-1] + "p"), "x is not canonical base64url"),
    (rfc_jwk(x="A"), "x is not unpadded base64url"),
    (rfc_jwk(x=b64url(bytes(31))), "x must encode 32 bytes, not 31"),
    (rfc_jwk(x=b64url(bytes(33))), "x must encode 32 bytes, not 33"),
    (rfc_jwk(x=""), "x must encode 32 bytes, not 0"),
    (rfc_jwk(x=b64url(b"\x01" + bytes(31))), "x is not a valid Ed25519 public key"),  # the identity point
    (rfc_jwk(kid="not-the-thumbprint"), "kid 'not-the-thumbprint' is not the key's RFC 7638 thumbprint"),
    (rfc_jwk(kid=key_id(KEY_A)), f"kid {key_id(KEY_A)!r} is not the key's RFC 7638 thumbprint {RFC_THUMBPRINT!r}"),
    (rfc_jwk(alg="RS256"), "alg must be one of ['Ed25519', 'EdDSA'], not 'RS256'"),
    (rfc_jwk(use="enc"), "use must be 'sig', not 'enc'"),
])
def test_from_jwk_refuses(data: object, message: str) -> None:
    with pytest.raises(JwkError) as caught:
        from_jwk(data)
    assert str(caught.value).startswith(message), str(caught.value)


# ── Key sets ──


def test_key_set_round_trip() -> None:
    keys = [KEY_A, KEY_B, RFC_KEY.verify_key]
    data = key_set(keys)
    assert [jwk["kid"] for jwk in data["keys"]] == [key_id(k) for k in keys]
    assert parse_key_set(data) == {key_id(k): k for k in keys}


def test_parse_key_set_accepts_a_single_jwk() -> None:
    assert parse_key_set(to_jwk(KEY_A)) == {key_id(KEY_A): KEY_A}
    assert parse_key_set(rfc_jwk()) == {RFC_THUMBPRINT: RFC_KEY.verify_key}


def test_key_set_refuses_a_key_twice() -> None:
    with pytest.raises(JwkError, match="twice"):
        key_set([KEY_A, KEY_B, KEY_A])


@pytest.mark.parametrize("data, message", [
    ({"keys": {}}, "keys must be an array, not dict"),
    ({"keys": []}, "the key set has no keys"),
    ({"keys": [to_jwk(KEY_A), rfc_jwk(kid="wrong")]}, "keys[1]: kid 'wrong' is not the key's"),
    ({"keys": [to_jwk(KEY_A), rfc_jwk(d=RFC_D)]}, 'keys[1]: the JWK has a private part ("d")'),
    ({"keys": ["x"]}, "keys[0]: a JWK must be a JSON object"),
    ({"keys": [to_jwk(KEY_A), to_jwk(KEY_B), rfc_jwk(), to_jwk(KEY_B)]}, f"keys[3]: key {key_id(KEY_B)} appears twice"),
    ({"kty": "RSA", "n": "x", "e": "AQAB"}, "the JWK: kty must be 'OKP', not 'RSA'"),
    ([to_jwk(KEY_A)], "the JWK: a JWK must be a JSON object, not list"),
])
def test_parse_key_set_refuses(data: object, message: str) -> None:
    with pytest.raises(JwkError) as caught:
        parse_key_set(data)
    assert str(caught.value).startswith(message), str(caught.value)
