"""DSSE v1 envelopes: PAE, the JSON form and its refusals, Ed25519 signatures, and a
cross-check both ways with the outside implementation securesystemslib."""

from __future__ import annotations

import base64
import copy

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from securesystemslib import dsse as sslib_dsse
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from executor.receipts.dsse import (
    RECEIPT_PAYLOAD_TYPE,
    TREE_HEAD_PAYLOAD_TYPE,
    Envelope,
    EnvelopeError,
    Signature,
    pae,
    sign,
    signature_holds,
)

SEED = bytes(range(32))
KEY = nacl.signing.SigningKey(SEED)
OTHER_KEY = nacl.signing.SigningKey(bytes(range(1, 33)))
PAYLOAD = b'{"execution":"ex_1","cost":{"amount":1250,"currency":"EUR"}}'


def signed(payload_type: str = RECEIPT_PAYLOAD_TYPE, payload: bytes = PAYLOAD, keyid: str = "k1") -> Envelope:
    return Envelope(payload_type, payload, (sign(payload_type, payload, KEY, keyid),))


# ── PAE ──


def test_pae_of_the_dsse_spec_example() -> None:
    expected = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("http://example.com/HelloWorld", b"hello world") == expected


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", b"") == b"DSSEv1 3 t\xc3\xa9 0 "
    assert pae("", b"\x00 1") == b"DSSEv1 0  3 \x00 1"


def test_payload_types_are_distinct() -> None:
    assert RECEIPT_PAYLOAD_TYPE == "application/vnd.executor.receipt+json"
    assert TREE_HEAD_PAYLOAD_TYPE == "application/vnd.executor.tree-head+json"
    # A signed receipt can never be passed off as a signed tree head: the type is under the signature.
    receipt = signed()
    as_head = Envelope(TREE_HEAD_PAYLOAD_TYPE, receipt.payload, receipt.signatures)
    assert not signature_holds(as_head, as_head.signatures[0], KEY.verify_key)


# ── JSON form ──


def test_to_json_and_back() -> None:
    envelope = Envelope("t", b"\xfb\xff\xfe", (Signature("k1", b"\xfb" * 64), Signature("k2", b"\x00" * 64)))
    data = envelope.to_json()
    assert data == {
        "payloadType": "t",
        "payload": "+//+",  # standard alphabet
        "signatures": [{"keyid": "k1", "sig": base64.b64encode(b"\xfb" * 64).decode()},
                       {"keyid": "k2", "sig": base64.b64encode(b"\x00" * 64).decode()}],
    }
    assert Envelope.from_json(data) == envelope
    assert Envelope.from_json(signed().to_json()) == signed()


def test_padding_is_emitted() -> None:
    assert Envelope("t", b"a", (Signature("k", b"ab"),)).to_json()["payload"] == "YQ=="


def test_from_json_accepts_url_safe_base64_too() -> None:
    data = {"payloadType": "t", "payload": "-__-", "signatures": [{"keyid": "k", "sig": "YQ=="}]}
    envelope = Envelope.from_json(data)
    assert envelope.payload == b"\xfb\xff\xfe" and envelope.signatures[0].sig == b"a"
    assert envelope.to_json()["payload"] == "+//+"  # emitted standard again


def test_from_json_accepts_an_empty_payload_and_ignores_unknown_members() -> None:
    data = {"payloadType": "t", "payload": "", "signatures": [{"keyid": "k", "sig": "YQ==", "x": 1}], "y": 2}
    assert Envelope.from_json(data) == Envelope("t", b"", (Signature("k", b"a"),))


GOOD = {"payloadType": "t", "payload": "YQ==", "signatures": [{"keyid": "k", "sig": "YWI="}]}


def _with(path: tuple[object, ...], value: object) -> dict[str, object]:
    data = copy.deepcopy(GOOD)
    target: object = data
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    if value is _DELETE:
        del target[path[-1]]  # type: ignore[attr-defined]
    else:
        target[path[-1]] = value  # type: ignore[index]
    return data


_DELETE = object()


@pytest.mark.parametrize("data, message", [
    ([], "envelope must be a JSON object, not an array"),
    (None, "envelope must be a JSON object, not null"),
    ('{"payload": ""}', "envelope must be a JSON object, not a string"),
    (_with(("payloadType",), _DELETE), "envelope has no 'payloadType' member"),
    (_with(("payload",), _DELETE), "envelope has no 'payload' member"),
    (_with(("signatures",), _DELETE), "envelope has no 'signatures' member"),
    (_with(("payloadType",), 1), "payloadType must be a string, not a number"),
    (_with(("payloadType",), ""), "payloadType is empty"),
    (_with(("payloadType",), "t\ud800"), "payloadType is not valid Unicode"),
    (_with(("payload",), None), "payload must be a string, not null"),
    (_with(("payload",), "YQ"), "payload is not base64: Incorrect padding"),
    (_with(("payload",), "YQ=\n"), "payload is not base64: character '\\n' at offset 3 is in neither"),
    (_with(("payload",), " YQ=="), "payload is not base64: character ' ' at offset 0"),
    (_with(("payload",), "Y!=="), "payload is not base64: character '!' at offset 1"),
    (_with(("payload",), "+-=="), "payload is not base64: mixes the standard (+/) and URL-safe (-_)"),
    (_with(("payload",), "Y=Q="), "payload is not base64: '=' padding must come last"),
    (_with(("payload",), "YQ==="), "payload is not base64: '=' padding must come last, at most two"),
    (_with(("payload",), "YR=="), "payload is not canonical base64"),
    (_with(("payload",), "YWJjZ"), "payload is not base64: Invalid base64-encoded string"),
    (_with(("payload",), "\u00e9Q=="), "payload is not base64: character '\u00e9' at offset 0"),
    (_with(("signatures",), {"keyid": "k"}), "signatures must be an array, not an object"),
    (_with(("signatures",), []), "signatures is empty: an envelope needs at least one signature"),
    (_with(("signatures", 0), "YWI="), "signatures[0] must be a JSON object, not a string"),
    (_with(("signatures", 0, "keyid"), _DELETE), "signatures[0] has no 'keyid' member"),
    (_with(("signatures", 0, "keyid"), 7), "signatures[0].keyid must be a string, not a number"),
    (_with(("signatures", 0, "keyid"), ""), "signatures[0].keyid is empty"),
    (_with(("signatures", 0, "sig"), _DELETE), "signatures[0] has no 'sig' member"),
    (_with(("signatures", 0, "sig"), False), "signatures[0].sig must be a string, not a boolean"),
    (_with(("signatures", 0, "sig"), ""), "signatures[0].sig is empty"),
    (_with(("signatures", 0, "sig"), "YWI"), "signatures[0].sig is not base64"),
    (_with(("signatures",), [{"keyid": "k", "sig": "YQ=="}, {"keyid": "k", "sig": "Yg=="}]),
     "signatures[1]: duplicate keyid 'k'"),
])
def test_from_json_refuses_malformed_envelopes(data: object, message: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        Envelope.from_json(data)
    assert str(caught.value).startswith(message), str(caught.value)


# ── Signatures ──


def test_signature_holds_for_the_signing_key_only() -> None:
    envelope = signed()
    signature = envelope.signatures[0]
    assert signature.keyid == "k1" and len(signature.sig) == 64
    assert signature_holds(envelope, signature, KEY.verify_key)
    assert not signature_holds(envelope, signature, OTHER_KEY.verify_key)
    # The signature is over PAE(type, payload), not over the bare payload.
    assert KEY.verify_key.verify(pae(RECEIPT_PAYLOAD_TYPE, PAYLOAD), signature.sig)


def test_any_flipped_byte_breaks_the_signature() -> None:
    envelope = signed()
    signature = envelope.signatures[0]
    for position in range(len(PAYLOAD)):
        payload = bytearray(PAYLOAD)
        payload[position] ^= 1
        assert not signature_holds(Envelope(envelope.payload_type, bytes(payload), ()), signature, KEY.verify_key)
    for position in range(64):
        sig = bytearray(signature.sig)
        sig[position] ^= 0x80
        assert not signature_holds(envelope, Signature("k1", bytes(sig)), KEY.verify_key)
    for position in range(len(RECEIPT_PAYLOAD_TYPE)):
        payload_type = bytearray(RECEIPT_PAYLOAD_TYPE.encode())
        payload_type[position] ^= 1
        tampered = Envelope(payload_type.decode(), PAYLOAD, ())
        assert not signature_holds(tampered, signature, KEY.verify_key)
    assert not signature_holds(Envelope(RECEIPT_PAYLOAD_TYPE, PAYLOAD + b" ", ()), signature, KEY.verify_key)


def test_bad_signatures_are_false_never_errors() -> None:
    envelope = signed()
    for sig in (b"", b"\x00" * 63, b"\x00" * 65, b"\x00" * 64, "not bytes"):
        assert signature_holds(envelope, Signature("k1", sig), KEY.verify_key) is False  # type: ignore[arg-type]
    weird = Envelope("t\ud800", PAYLOAD, ())
    assert signature_holds(weird, envelope.signatures[0], KEY.verify_key) is False


def test_the_keyid_is_not_signed() -> None:
    # DSSE: keyid is an unauthenticated hint; relabelling it does not change what was signed.
    envelope = signed(keyid="k1")
    relabelled = Signature("someone-else", envelope.signatures[0].sig)
    assert signature_holds(envelope, relabelled, KEY.verify_key)


# ── Cross-check with securesystemslib ──


def _sslib_key(keyid: str, verify_key: nacl.signing.VerifyKey) -> SSlibKey:
    return SSlibKey(keyid, "ed25519", "ed25519", {"public": bytes(verify_key).hex()})


def test_securesystemslib_verifies_our_envelopes() -> None:
    envelope = signed(keyid="receipts-2025")
    key = _sslib_key("receipts-2025", KEY.verify_key)
    # from_dict rewrites the signature dicts it is given: hand it a fresh copy each time.
    accepted = sslib_dsse.Envelope.from_dict(envelope.to_json()).verify([key], 1)
    assert list(accepted) == ["receipts-2025"]
    assert sslib_dsse.Envelope.from_dict(envelope.to_json()).pae() == pae(RECEIPT_PAYLOAD_TYPE, PAYLOAD)


@pytest.mark.parametrize("field, value", [
    ("payload", base64.b64encode(PAYLOAD + b" ").decode()),
    ("payloadType", TREE_HEAD_PAYLOAD_TYPE),
])
def test_securesystemslib_refuses_our_envelopes_tampered(field: str, value: str) -> None:
    data = signed(keyid="k1").to_json()
    data[field] = value
    with pytest.raises(VerificationError):
        sslib_dsse.Envelope.from_dict(data).verify([_sslib_key("k1", KEY.verify_key)], 1)


def test_securesystemslib_refuses_our_envelope_under_another_key() -> None:
    data = signed(keyid="k1").to_json()
    with pytest.raises(VerificationError):
        sslib_dsse.Envelope.from_dict(data).verify([_sslib_key("k1", OTHER_KEY.verify_key)], 1)


def test_we_verify_envelopes_signed_by_securesystemslib() -> None:
    private = Ed25519PrivateKey.generate()
    public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signer = CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), keyid="theirs"))
    theirs = sslib_dsse.Envelope(PAYLOAD, RECEIPT_PAYLOAD_TYPE, {})
    theirs.sign(signer)

    envelope = Envelope.from_json(theirs.to_dict())
    assert envelope.payload == PAYLOAD and envelope.payload_type == RECEIPT_PAYLOAD_TYPE
    (signature,) = envelope.signatures
    assert signature.keyid == "theirs"
    assert signature_holds(envelope, signature, nacl.signing.VerifyKey(public_raw))
    assert not signature_holds(envelope, signature, KEY.verify_key)
    tampered = Envelope(envelope.payload_type, envelope.payload + b"\n", envelope.signatures)
    assert not signature_holds(tampered, signature, nacl.signing.VerifyKey(public_raw))


def test_same_key_same_signature_in_both_libraries() -> None:
    # Ed25519 is deterministic: the same seed signs the same PAE to the same bytes in PyNaCl and cryptography.
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    signer = CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), keyid="k1"))
    theirs = sslib_dsse.Envelope(PAYLOAD, RECEIPT_PAYLOAD_TYPE, {})
    theirs.sign(signer)
    assert Envelope.from_json(theirs.to_dict()) == signed(keyid="k1")
