"""The SDK's offline receipt verifier gives the service's verdict, to the reason and its detail.

Bundles are made with the SERVICE's code (executor.receipts, via tests/receipts/test_verify.py's
Log) and tampered with in many ways; for each, executor_client.receipts.verify_bundle must
report exactly what executor.receipts.verify.verify_bundle reports. (Only this test imports the
service; the SDK itself never does.)"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import nacl.signing
import pytest

from executor.receipts import dsse
from executor.receipts.canonical import canonical_json
from executor.receipts.jwk import key_set, to_jwk
from executor.receipts.verify import verify_bundle as service_verify
from executor_client import KeySetError
from executor_client import receipts as sdk
from tests.receipts.test_verify import T0, Log

KEY = nacl.signing.SigningKey.generate()
WITNESS = nacl.signing.SigningKey.generate()


def build() -> tuple[Log, dict[str, Any], dict[str, Any]]:
    """A log of 5 receipts; the bundle of leaf 2 against a head of size 5; a head kept at size 3."""
    log = Log(KEY)
    for minute in range(3):
        log.append(T0 + timedelta(minutes=minute))
    kept = log.head(T0 + timedelta(minutes=10))
    for minute in range(3, 5):
        log.append(T0 + timedelta(minutes=minute + 10))
    return log, log.bundle(2, log.head(T0 + timedelta(hours=1))), kept


def resign(log: Log, payload: bytes, payload_type: str = dsse.RECEIPT_PAYLOAD_TYPE) -> dict[str, Any]:
    signature = dsse.sign(payload_type, payload, log.key, log.kid)
    return dsse.Envelope(payload_type, payload, (signature,)).to_json()


def statement(bundle: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(bundle["envelope"]["payload"]))  # type: ignore[no-any-return]


def flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def with_statement(change: Callable[[dict[str, Any]], None]) -> Callable[[Log, dict[str, Any]], None]:
    def tamper(log: Log, bundle: dict[str, Any]) -> None:
        value = statement(bundle)
        change(value)
        bundle["envelope"] = resign(log, canonical_json(value))
    return tamper


def set_path(*path: Any, value: Any) -> Callable[[Log, dict[str, Any]], None]:
    def tamper(log: Log, bundle: dict[str, Any]) -> None:
        target: Any = bundle
        for step in path[:-1]:
            target = target[step]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value(target[path[-1]]) if callable(value) else value
    return tamper


DELETE = object()


def witnessed(valid: bool, declared: bool = True, jwk_ok: bool = True) -> Callable[[Log, dict[str, Any]], None]:
    def tamper(log: Log, bundle: dict[str, Any]) -> None:
        payload = base64.b64decode(bundle["envelope"]["payload"])
        sig = dsse.sign(dsse.RECEIPT_PAYLOAD_TYPE, payload, WITNESS, "market-1").sig if valid else bytes(64)
        bundle["envelope"]["signatures"].append({"keyid": "market-1", "sig": base64.b64encode(sig).decode()})
        jwk = to_jwk(WITNESS.verify_key) if jwk_ok else {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}
        if declared:
            bundle["witnesses"] = [{"keyid": "market-1", "public_key": jwk, "attested_by": "service:m",
                                    "attested_at": "2026-12-01T12:00:00.000000Z"}]
    return tamper


def head_statement_change(change: Callable[[dict[str, Any]], None], *, sign: bool = True
                          ) -> Callable[[Log, dict[str, Any]], None]:
    def tamper(log: Log, bundle: dict[str, Any]) -> None:
        head = json.loads(base64.b64decode(bundle["tree_head"]["payload"]))
        change(head)
        payload = canonical_json(head)
        if sign:
            bundle["tree_head"] = resign(log, payload, dsse.TREE_HEAD_PAYLOAD_TYPE)
        else:
            bundle["tree_head"]["payload"] = base64.b64encode(payload).decode()
    return tamper


def noop(log: Log, bundle: dict[str, Any]) -> None:
    return None


TAMPERS: dict[str, Callable[[Log, dict[str, Any]], None]] = {
    "untouched": noop,
    "no envelope": set_path("envelope", value=DELETE),
    "envelope not an object": set_path("envelope", value=[1]),
    "payload type": set_path("envelope", "payloadType", value="application/json"),
    "payload not base64": set_path("envelope", "payload", value="***"),
    "payload url-safe alphabet": set_path("envelope", "payload",
                                          value=lambda p: base64.urlsafe_b64encode(base64.b64decode(p)).decode()),
    "payload not json": lambda log, b: b.update(envelope=resign(log, b"\xff not json")),
    "payload not canonical": lambda log, b: b.update(envelope=resign(log, json.dumps(statement(b)).encode())),
    "payload a float": lambda log, b: b.update(envelope=resign(log, json.dumps(
        {**statement(b), "exit_code": 1.5}, separators=(",", ":"), sort_keys=True).encode())),
    "payload missing a field": with_statement(lambda s: s.pop("owner")),
    "payload extra field": with_statement(lambda s: s.update(extra=1)),
    "payload wrong version": with_statement(lambda s: s.update(receipt_version=2)),
    "payload bad time": with_statement(lambda s: s.update(issued_at="yesterday")),
    "payload bad usage": with_statement(lambda s: s["usage"].update(cpu_ms="1")),
    "payload changed after signing": set_path("envelope", "payload", value=lambda p: base64.b64encode(
        base64.b64decode(p).replace(b"user:alice", b"user:mallo")).decode()),
    "signature flipped": set_path("envelope", "signatures", 0, "sig", value=flip),
    "signature short": set_path("envelope", "signatures", 0, "sig", value=base64.b64encode(b"x" * 10).decode()),
    "signatures empty": set_path("envelope", "signatures", value=[]),
    "signature keyid renamed": set_path("envelope", "signatures", 0, "keyid", value="someone"),
    "duplicate keyid": lambda log, b: b["envelope"]["signatures"].append(dict(b["envelope"]["signatures"][0])),
    "witness good": witnessed(True),
    "witness forged": witnessed(False),
    "witness undeclared": witnessed(True, declared=False),
    "witness bad jwk": witnessed(False, jwk_ok=False),
    "head missing": set_path("tree_head", value=DELETE),
    "head not an envelope": set_path("tree_head", value="head"),
    "head payload type": lambda log, b: b.update(tree_head=resign(log, base64.b64decode(b["tree_head"]["payload"]))),
    "head root changed unsigned": head_statement_change(lambda h: h.update(root_hash="00" * 32), sign=False),
    "head root changed resigned": head_statement_change(lambda h: h.update(root_hash="00" * 32)),
    "head bad field": head_statement_change(lambda h: h.update(tree_size="5")),
    "head other key id": head_statement_change(lambda h: h.update(key_id="other")),
    "head other log": head_statement_change(lambda h: h.update(log_id="another-log")),
    "head before the receipt": head_statement_change(lambda h: h.update(timestamp="2020-01-01T00:00:00.000000Z")),
    "proof malformed": set_path("inclusion_proof", value={"log_index": 2}),
    "proof hash not hex": set_path("inclusion_proof", "hashes", 0, value="zz" * 32),
    "proof other index": set_path("inclusion_proof", "log_index", value=3),
    "proof other size": set_path("inclusion_proof", "tree_size", value=4),
    "proof hash changed": set_path("inclusion_proof", "hashes", 0, value="ab" * 32),
    "proof hash dropped": set_path("inclusion_proof", "hashes", value=lambda h: h[:-1]),
    "bundle a list": lambda log, b: b.clear(),
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_the_sdk_verdict_is_the_services(case: str) -> None:
    log, bundle, _ = build()
    keys = {log.kid: KEY.verify_key}
    TAMPERS[case](log, bundle)
    expected = service_verify(bundle, keys).to_dict()
    assert sdk.verify_bundle(copy.deepcopy(bundle), keys).to_dict() == expected
    # The same with the key set as the service publishes it (GET /v1/keys).
    assert sdk.verify_bundle(bundle, key_set([KEY.verify_key])).to_dict() == expected
    if case == "untouched":
        assert expected["valid"]
    elif case not in ("witness good", "witness undeclared", "witness bad jwk", "payload url-safe alphabet"):
        assert not expected["valid"], case


@pytest.mark.parametrize("given", [
    {}, {"input_bytes": b"{}"}, {"output_bytes": b"[]"}, {"input_bytes": b"x", "output_bytes": b"y"}])
def test_content_hashes(given: dict[str, bytes]) -> None:
    log, bundle, _ = build()
    keys = {log.kid: KEY.verify_key}
    assert sdk.verify_bundle(bundle, keys, **given).to_dict() == service_verify(bundle, keys, **given).to_dict()


def test_untrusted_and_retired_keys() -> None:
    log, bundle, _ = build()
    other = nacl.signing.SigningKey.generate().verify_key
    for keys in ({}, {"x": other}):
        assert sdk.verify_bundle(bundle, keys).to_dict() == service_verify(bundle, keys).to_dict()
    retired = {log.kid: T0}
    assert sdk.verify_bundle(bundle, {}, retired=retired).to_dict() == \
        service_verify(bundle, {}, retired=retired).to_dict()


def test_trusted_heads() -> None:
    log, bundle, kept = build()
    keys = {log.kid: KEY.verify_key}
    backdated = Log(KEY)
    backdated.append(T0)
    early = backdated.head(T0 + timedelta(minutes=10))
    backdated.append(T0 + timedelta(minutes=5))
    cases = {
        "older head of this log": (bundle, kept),
        "the bundle's own head": (bundle, bundle["tree_head"]),
        "a forked head": (bundle, log.head(T0 + timedelta(hours=1), root=b"\x07" * 32)),
        "a head of another log": (bundle, Log(KEY).head(T0)),
        "not a head": (bundle, {"payloadType": "x"}),
        "backdated": (backdated.bundle(1, backdated.head(T0 + timedelta(minutes=20))), early),
        "proof for the kept size": (log.bundle(1, kept, size=3), kept),
    }
    for name, (candidate, head) in cases.items():
        expected = service_verify(candidate, keys, trusted_head=head).to_dict()
        assert sdk.verify_bundle(candidate, keys, trusted_head=head).to_dict() == expected, name
    assert sdk.verify_bundle(log.bundle(1, kept, size=3), keys, trusted_head=kept).valid


def test_a_bad_key_set_is_refused() -> None:
    log, bundle, _ = build()
    for bad in ({"keys": []}, {"keys": [{"kty": "RSA"}]}, {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
                {"keys": [{**to_jwk(KEY.verify_key), "d": "secret"}]}):
        with pytest.raises(KeySetError):
            sdk.verify_bundle(bundle, bad)
    assert sdk.parse_key_set(to_jwk(KEY.verify_key)) == {log.kid: KEY.verify_key}
    assert sdk.key_id(KEY.verify_key) == log.kid


EGRESS = [
    {"seq": 1, "method": "POST", "upstream": "models", "path": "/v1/chat", "status": 200, "bytes_out": 120,
     "bytes_in": 2048, "duration_ms": 35, "outcome": "ok", "reason": None},
    {"seq": 2, "method": "GET", "upstream": "search", "path": "/q?s=caf\u00e9", "status": 404, "bytes_out": 0,
     "bytes_in": 17, "duration_ms": 9, "outcome": "ok", "reason": None},
]


def build_with_egress() -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundle of a receipt whose agent declared egress (its statement binds EGRESS), and keys."""
    log = Log(KEY, egress=sdk.egress_digest(EGRESS))
    for minute in range(3):
        log.append(T0 + timedelta(minutes=minute))
    return log.bundle(1, log.head(T0 + timedelta(hours=1))), {log.kid: KEY.verify_key}


def edited(change: Callable[[list[dict[str, Any]]], Any]) -> list[dict[str, Any]]:
    entries = copy.deepcopy(EGRESS)
    change(entries)
    return entries


@pytest.mark.parametrize(("name", "given", "valid"), [
    ("not given", None, True),
    ("the recorded list", EGRESS, True),
    ("a changed status", edited(lambda e: e[0].update(status=500)), False),
    ("a dropped entry", edited(lambda e: e.pop()), False),
    ("a changed byte count", edited(lambda e: e[1].update(bytes_in=18)), False),
    ("an empty list", [], False),
    ("not a list of objects", [1, 2], False),
    ("a float in it", edited(lambda e: e[0].update(duration_ms=1.5)), False),
])
def test_egress_is_checked_as_the_service_checks_it(name: str, given: Any, valid: bool) -> None:
    bundle, keys = build_with_egress()
    expected = service_verify(bundle, keys, egress=copy.deepcopy(given)).to_dict()
    found = sdk.verify_bundle(bundle, keys, egress=copy.deepcopy(given)).to_dict()
    assert found == expected, name
    assert found["valid"] is valid, name
    assert found["receipt"]["egress"] == {"sha256": sdk.egress_digest(EGRESS)["sha256"], "requests": 2,
                                          "bytes_out": 120, "bytes_in": 2065}
    if not valid:
        assert [f["reason"] for f in found["failures"]] == ["egress_mismatch"], name


def test_a_receipt_without_egress_verifies_and_refuses_a_list() -> None:
    _log, bundle, _ = build()
    keys = {_log.kid: KEY.verify_key}
    report = sdk.verify_bundle(bundle, keys)
    assert report.valid and report.statement is not None and "egress" not in report.statement
    for given in ([], EGRESS):
        found = sdk.verify_bundle(bundle, keys, egress=given).to_dict()
        assert found == service_verify(bundle, keys, egress=given).to_dict()
        assert [f["reason"] for f in found["failures"]] == ["egress_mismatch"]


@pytest.mark.parametrize("bad", [{"sha256": "00" * 32}, {"sha256": "AB" * 32, "requests": 0, "bytes_out": 0,
                                                          "bytes_in": 0}, "x", None])
def test_a_malformed_egress_field_gets_the_services_verdict(bad: Any) -> None:
    bundle, keys = build_with_egress()
    with_statement(lambda s: s.update(egress=bad))(Log(KEY), bundle)
    expected = service_verify(bundle, keys).to_dict()
    assert sdk.verify_bundle(bundle, keys).to_dict() == expected
    assert [f["reason"] for f in expected["failures"]] == ["payload_invalid"]


def test_the_sdk_digest_is_the_services() -> None:
    from executor.receipts.egress import egress_digest
    assert sdk.egress_digest(EGRESS) == egress_digest(EGRESS)
    assert sdk.egress_digest([]) == egress_digest([])
