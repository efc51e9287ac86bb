"""Ed25519 public keys as JWKs (RFC 8037 §2, "OKP") and their key ids (a port of executor/receipts/jwk.py).

A key's id is its RFC 7638 JWK thumbprint, so the id is derived from the key
itself: anyone holding the public key can recompute it, and a published `kid`
that does not match its key is refused rather than trusted.

Only public keys travel this way; a JWK with a private part ("d") is refused
loudly, since receiving one means a secret has already leaked.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import TYPE_CHECKING, Any

from executor_client.errors import KeySetError
from executor_client.receipts import _nacl

if TYPE_CHECKING:
    import nacl.signing

PUBLIC_KEY_BYTES = 32

KTY = "OKP"
CRV = "Ed25519"
# "EdDSA" is RFC 8037's; "Ed25519" is the fully specified name of RFC 9864.
ACCEPTED_ALGS = frozenset({"EdDSA", "Ed25519"})

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


JwkError = KeySetError  # the server's name for it


def key_id(key: nacl.signing.VerifyKey) -> str:
    """The RFC 7638 thumbprint of the key's JWK: base64url (unpadded) SHA-256 of its required members."""
    # RFC 7638 §3.2 / RFC 8037 §2: exactly crv, kty, x, in that (lexicographic) order, no whitespace.
    members = f'{{"crv":"{CRV}","kty":"{KTY}","x":"{_b64url(bytes(key))}"}}'
    return _b64url(hashlib.sha256(members.encode("ascii")).digest())


def to_jwk(key: nacl.signing.VerifyKey) -> dict[str, str]:
    """The public JWK of an Ed25519 key, with its thumbprint as `kid`."""
    return {"kty": KTY, "crv": CRV, "x": _b64url(bytes(key)), "kid": key_id(key), "alg": "EdDSA", "use": "sig"}


def from_jwk(data: object) -> nacl.signing.VerifyKey:
    """The Ed25519 public key of a JWK; raises JwkError for anything else, or a `kid` that is not its thumbprint."""
    if not isinstance(data, dict):
        raise JwkError(f"a JWK must be a JSON object, not {type(data).__name__}")
    if "d" in data:
        raise JwkError('the JWK has a private part ("d"): refused, and that private key must be treated as leaked')
    if data.get("kty") != KTY:
        raise JwkError(f"kty must be {KTY!r}, not {data.get('kty')!r}")
    if data.get("crv") != CRV:
        raise JwkError(f"crv must be {CRV!r}, not {data.get('crv')!r}")
    key = _nacl.verify_key(_public_bytes(data.get("x")))
    _check_optional(data, key)
    return key


def parse_key_set(data: object) -> dict[str, nacl.signing.VerifyKey]:
    """Keys by their thumbprint from a JWK set or a single JWK; raises JwkError naming the bad entry."""
    if isinstance(data, dict) and "keys" in data:
        entries = data["keys"]
        if not isinstance(entries, list):
            raise JwkError(f"keys must be an array, not {type(entries).__name__}")
        if not entries:
            raise JwkError("the key set has no keys")
        labelled = [(f"keys[{position}]", entry) for position, entry in enumerate(entries)]
    else:
        labelled = [("the JWK", data)]
    found: dict[str, nacl.signing.VerifyKey] = {}
    for label, entry in labelled:
        try:
            key = from_jwk(entry)
        except JwkError as exc:
            raise JwkError(f"{label}: {exc}") from None
        kid = key_id(key)
        if kid in found:
            raise JwkError(f"{label}: key {kid} appears twice")
        found[kid] = key
    return found


def _public_bytes(x: object) -> bytes:
    if x is None:
        raise JwkError("the JWK has no x (the public key)")
    if not isinstance(x, str):
        raise JwkError(f"x must be a string, not {type(x).__name__}")
    raw = _b64url_decode(x, "x")
    if len(raw) != PUBLIC_KEY_BYTES:
        raise JwkError(f"x must encode {PUBLIC_KEY_BYTES} bytes, not {len(raw)}")
    # Also refuses small-order and non-canonical points: no honest key is one.
    if not _nacl.is_valid_point(raw):
        raise JwkError("x is not a valid Ed25519 public key")
    return raw


def _check_optional(data: dict[str, Any], key: nacl.signing.VerifyKey) -> None:
    if "kid" in data and data["kid"] != key_id(key):
        raise JwkError(f"kid {data['kid']!r} is not the key's RFC 7638 thumbprint {key_id(key)!r}")
    if "alg" in data and data["alg"] not in ACCEPTED_ALGS:
        raise JwkError(f"alg must be one of {sorted(ACCEPTED_ALGS)}, not {data['alg']!r}")
    if "use" in data and data["use"] != "sig":
        raise JwkError(f"use must be 'sig', not {data['use']!r}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, label: str) -> bytes:
    """Strict RFC 7515 §2 base64url: URL-safe alphabet, no padding, canonical trailing bits."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JwkError(f"{label} is not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url(raw) != text:
        raise JwkError(f"{label} is not canonical base64url (non-zero bits in the last character)")
    return raw
