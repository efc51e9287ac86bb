"""A receipt verifier that shares no code with executor: written from the DSSE v1 protocol,
RFC 9162 §2.1.3.2 and RFC 8037/7638, with only PyNaCl, hashlib and the outside RFC 8785
implementation `rfc8785`. If executor's own verifier and this one disagree, one is wrong."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import nacl.exceptions
import nacl.signing
import rfc8785


def _pae(payload_type: bytes, body: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(body), body)


def _thumbprint(jwk: dict[str, str]) -> str:
    members = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


def _jwk_key(jwk: dict[str, str]) -> nacl.signing.VerifyKey:
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    return nacl.signing.VerifyKey(base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4)))


def keys_from_jwks(jwks: dict[str, Any]) -> dict[str, nacl.signing.VerifyKey]:
    keys = {}
    for jwk in jwks["keys"]:
        assert jwk["kid"] == _thumbprint(jwk), "a kid that is not the key's thumbprint"
        keys[jwk["kid"]] = _jwk_key(jwk)
    return keys


def _signed_by(envelope: dict[str, Any], keyid: str, keys: dict[str, nacl.signing.VerifyKey]) -> bytes:
    """The payload, when `keyid` signed the envelope and its key is in `keys`; else AssertionError."""
    payload = base64.b64decode(envelope["payload"])
    pae = _pae(envelope["payloadType"].encode(), payload)
    for signature in envelope["signatures"]:
        if signature["keyid"] == keyid:
            try:
                keys[keyid].verify(pae, base64.b64decode(signature["sig"]))
            except nacl.exceptions.BadSignatureError:
                raise AssertionError(f"the signature of {keyid} does not hold") from None
            return payload
    raise AssertionError(f"no signature by {keyid}")


def _root_from_inclusion(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2, step by step."""
    assert index < size
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof of the wrong length"
    return r


def verify_independently(bundle: dict[str, Any], jwks: dict[str, Any], *, stdin: bytes | None = None,
                         stdout: bytes | None = None, egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The receipt statement when every check holds; raises AssertionError naming the first that does not."""
    keys = keys_from_jwks(jwks)
    envelope = bundle["envelope"]
    assert envelope["payloadType"] == "application/vnd.executor.receipt+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    payload = _signed_by(envelope, statement["key_id"], keys)
    assert rfc8785.dumps(statement) == payload, "the payload is not RFC 8785 canonical JSON"
    if stdin is not None:
        assert hashlib.sha256(stdin).hexdigest() == statement["input_sha256"], "input hash"
    if stdout is not None:
        assert hashlib.sha256(stdout).hexdigest() == statement["output_sha256"], "output hash"
    if egress is not None:
        bound = statement["egress"]
        assert hashlib.sha256(rfc8785.dumps(egress)).hexdigest() == bound["sha256"], "egress hash"
        assert (bound["requests"], bound["bytes_out"], bound["bytes_in"]) == (
            len(egress), sum(e["bytes_out"] for e in egress), sum(e["bytes_in"] for e in egress)), "egress totals"

    head_envelope = bundle["tree_head"]
    assert head_envelope["payloadType"] == "application/vnd.executor.tree-head+json"
    head = json.loads(base64.b64decode(head_envelope["payload"]))
    _signed_by(head_envelope, head["key_id"], keys)
    proof = bundle["inclusion_proof"]
    assert proof["log_index"] == statement["log_index"] and proof["tree_size"] == head["tree_size"]
    assert head["log_id"] == statement["log_id"]
    leaf = hashlib.sha256(b"\x00" + payload).digest()
    path = [bytes.fromhex(h) for h in proof["hashes"]]
    root = _root_from_inclusion(leaf, proof["log_index"], proof["tree_size"], path)
    assert root.hex() == head["root_hash"], "the inclusion proof does not lead to the signed root"
    return statement
