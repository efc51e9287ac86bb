"""DSSE v1 envelopes (Dead Simple Signing Envelope) signed with Ed25519: parsing and checking
(a port of executor/receipts/dsse.py; PyNaCl is imported when a signature is checked).

The signature covers the Pre-Authentication Encoding of the payload type and
the payload bytes (DSSE protocol.md), never the JSON around them, so the
envelope's own serialization needs no canonical form. Spec:
https://github.com/secure-systems-lab/dsse (envelope.md, protocol.md).

A signature's `keyid` is an unauthenticated hint for picking the key; the
verifier decides which key it trusts for that id.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from executor_client.receipts import _nacl

if TYPE_CHECKING:
    import nacl.signing

SIGNATURE_BYTES = 64

RECEIPT_PAYLOAD_TYPE = "application/vnd.executor.receipt+json"
TREE_HEAD_PAYLOAD_TYPE = "application/vnd.executor.tree-head+json"

# DSSE allows standard or URL-safe base64 on reading; we take either alphabet
# (not a mix), padded, and emit standard.
_STANDARD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class EnvelopeError(ValueError):
    """A DSSE envelope in JSON form is malformed; the message names the field and the fault."""


@dataclass(frozen=True)
class Signature:
    """One signature of an envelope: the signer's key id (a hint) and the raw Ed25519 signature."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A payload, its type, and one or more signatures over their PAE."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, Any]:
        """The DSSE JSON envelope, base64 fields in standard alphabet with padding."""
        return {
            "payloadType": self.payload_type,
            "payload": _b64encode(self.payload),
            "signatures": [{"keyid": s.keyid, "sig": _b64encode(s.sig)} for s in self.signatures],
        }

    @classmethod
    def from_json(cls, data: object) -> Envelope:
        """Parse a DSSE JSON envelope (as loaded by json.loads); raises EnvelopeError if malformed."""
        if not isinstance(data, dict):
            raise EnvelopeError(f"envelope must be a JSON object, not {_json_type(data)}")
        payload_type = _text(data, "payloadType", "envelope")
        payload = _b64decode(_text(data, "payload", "envelope", allow_empty=True), "payload")
        raw_signatures = _member(data, "signatures", "envelope")
        if not isinstance(raw_signatures, list):
            raise EnvelopeError(f"signatures must be an array, not {_json_type(raw_signatures)}")
        if not raw_signatures:
            raise EnvelopeError("signatures is empty: an envelope needs at least one signature")
        signatures: list[Signature] = []
        seen: set[str] = set()
        for position, raw in enumerate(raw_signatures):
            where = f"signatures[{position}]"
            if not isinstance(raw, dict):
                raise EnvelopeError(f"{where} must be a JSON object, not {_json_type(raw)}")
            keyid = _text(raw, "keyid", where)
            if keyid in seen:
                raise EnvelopeError(f"{where}: duplicate keyid {keyid!r}")
            seen.add(keyid)
            sig = _b64decode(_text(raw, "sig", where), f"{where}.sig")
            signatures.append(Signature(keyid, sig))
        return cls(payload_type, payload, tuple(signatures))


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def signature_holds(envelope: Envelope, signature: Signature, key: nacl.signing.VerifyKey) -> bool:
    """Whether `signature` is `key`'s Ed25519 signature of the envelope's PAE; False, never an error, if not."""
    if not isinstance(signature.sig, bytes) or len(signature.sig) != SIGNATURE_BYTES:
        return False
    try:
        message = pae(envelope.payload_type, envelope.payload)
    except ValueError:  # a payload type with no UTF-8 form (lone surrogate)
        return False
    return _nacl.holds(key, message, signature.sig)


def _member(data: dict[str, Any], name: str, where: str) -> object:
    if name not in data:
        raise EnvelopeError(f"{where} has no {name!r} member")
    return data[name]


def _text(data: dict[str, Any], name: str, where: str, *, allow_empty: bool = False) -> str:
    value = _member(data, name, where)
    label = name if where == "envelope" else f"{where}.{name}"
    if not isinstance(value, str):
        raise EnvelopeError(f"{label} must be a string, not {_json_type(value)}")
    if not value and not allow_empty:
        raise EnvelopeError(f"{label} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EnvelopeError(f"{label} is not valid Unicode (lone surrogate)") from None
    return value


def _b64encode(data: bytes) -> str:
    return base64.standard_b64encode(data).decode("ascii")


def _b64decode(text: str, label: str) -> bytes:
    """Strict: one alphabet, correct padding, no whitespace, and canonical (re-encodes to the same text)."""
    if _STANDARD_B64.fullmatch(text):
        altchars = None
    elif _URLSAFE_B64.fullmatch(text):
        altchars = b"-_"
    else:
        raise EnvelopeError(f"{label} is not base64: {_b64_fault(text)}")
    try:
        data = base64.b64decode(text, altchars=altchars, validate=True)
    except binascii.Error as exc:
        raise EnvelopeError(f"{label} is not base64: {exc}") from None
    again = base64.b64encode(data, altchars=altchars).decode("ascii")
    if again != text:
        raise EnvelopeError(f"{label} is not canonical base64 (non-zero bits in the last character)")
    return data


def _b64_fault(text: str) -> str:
    for offset, char in enumerate(text):
        if not (char.isascii() and (char.isalnum() or char in "+/-_=")):
            return f"character {char!r} at offset {offset} is in neither base64 alphabet"
    if any(c in text for c in "+/") and any(c in text for c in "-_"):
        return "mixes the standard (+/) and URL-safe (-_) alphabets"
    return "'=' padding must come last, at most two of it"


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
