"""The verifier's reasons, on bundles built here with real keys and a real Merkle tree (pure logic):
the cases a well-behaved service never produces (a back-dated receipt, a forked log, a
receipt dated after its head), and witnesses' signatures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import nacl.signing

from executor.receipts import dsse, merkle
from executor.receipts.canonical import canonical_json
from executor.receipts.jwk import key_id, to_jwk
from executor.receipts.log import head_statement
from executor.receipts.statement import rfc3339
from executor.receipts.verify import verify_bundle

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Log:
    """A log as the service keeps it: leaves, complete-subtree nodes, signed heads."""

    def __init__(self, key: nacl.signing.SigningKey, *, egress: dict[str, Any] | None = None) -> None:
        self.key, self.kid = key, key_id(key.verify_key)
        self.egress = egress  # the egress digest each statement carries; None: none (an agent without egress)
        self.log_id = uuid.uuid4()
        self.leaves: list[bytes] = []
        self.frontier: list[bytes] = []
        self.nodes: dict[tuple[int, int], bytes] = {}

    def statement(self, index: int, issued_at: datetime) -> dict[str, Any]:
        return {
            "receipt_version": 1, "log_id": str(self.log_id), "log_index": index, "key_id": self.kid,
            "issued_at": rfc3339(issued_at), "execution_id": str(uuid.uuid4()), "owner": "user:alice",
            "agent_id": str(uuid.uuid4()), "agent_version": 1, "agent_kind": "container",
            "image_digest": "sha256:" + "ab" * 32, "module_sha256": None, "oci_runtime": "runc",
            "input_sha256": "00" * 32, "input_bytes": 2, "output_sha256": "11" * 32, "output_bytes": 2,
            "status": "COMPLETED", "error_type": None, "exit_code": 0, "created_at": rfc3339(issued_at),
            "started_at": rfc3339(issued_at), "finished_at": rfc3339(issued_at),
            "usage": {"wall_ms": 5, "cpu_ms": 1, "peak_memory_bytes": 4096, "fuel_consumed": None}, "cost": None,
            **({"egress": self.egress} if self.egress is not None else {}),
        }

    def append(self, issued_at: datetime) -> bytes:
        payload = canonical_json(self.statement(len(self.leaves), issued_at))
        self.frontier, completed = merkle.append(self.frontier, len(self.leaves), merkle.leaf_hash(payload))
        self.nodes.update({(level, index): digest for level, index, digest in completed})
        self.leaves.append(payload)
        return payload

    def head(self, timestamp: datetime, root: bytes | None = None) -> dict[str, Any]:
        statement = head_statement(self.log_id, len(self.leaves), root or merkle.root(self.frontier), self.kid,
                                   timestamp)
        payload = canonical_json(statement)
        signature = dsse.sign(dsse.TREE_HEAD_PAYLOAD_TYPE, payload, self.key, self.kid)
        return dsse.Envelope(dsse.TREE_HEAD_PAYLOAD_TYPE, payload, (signature,)).to_json()

    def bundle(self, index: int, head: dict[str, Any], size: int | None = None,
               extra: tuple[dsse.Signature, ...] = (), witnesses: list[Any] | None = None) -> dict[str, Any]:
        payload = self.leaves[index]
        size = size or len(self.leaves)
        signature = dsse.sign(dsse.RECEIPT_PAYLOAD_TYPE, payload, self.key, self.kid)
        proof = merkle.inclusion_plan(index, size).assemble(self.nodes)
        return {"envelope": dsse.Envelope(dsse.RECEIPT_PAYLOAD_TYPE, payload, (signature, *extra)).to_json(),
                "witnesses": witnesses or [],
                "inclusion_proof": {"log_index": index, "tree_size": size, "hashes": [h.hex() for h in proof]},
                "tree_head": head}


def setup() -> tuple[Log, dict[str, nacl.signing.VerifyKey]]:
    key = nacl.signing.SigningKey.generate()
    log = Log(key)
    return log, {log.kid: key.verify_key}


def reasons(report) -> set[str]:
    return {failure.reason for failure in report.failures}


def test_a_well_formed_bundle_verifies() -> None:
    log, keys = setup()
    for minute in range(5):
        log.append(T0 + timedelta(minutes=minute))
    report = verify_bundle(log.bundle(2, log.head(T0 + timedelta(hours=1))), keys)
    assert report.valid, report.failures
    assert report.statement["log_index"] == 2 and report.head["tree_size"] == 5


def test_a_backdated_receipt_is_caught_by_an_earlier_head() -> None:
    log, keys = setup()
    log.append(T0)
    kept = log.head(T0 + timedelta(minutes=10))  # an auditor kept this head of size 1
    log.append(T0 + timedelta(minutes=5))  # appended after that head, yet dated before it
    bundle = log.bundle(1, log.head(T0 + timedelta(minutes=20)))
    assert verify_bundle(bundle, keys).valid  # on its own, nothing shows
    assert reasons(verify_bundle(bundle, keys, trusted_head=kept)) == {"backdated"}
    honest = Log.append(log, T0 + timedelta(minutes=30))
    assert honest and verify_bundle(log.bundle(2, log.head(T0 + timedelta(minutes=40))), keys, trusted_head=kept).valid


def test_a_forked_log_shows_two_roots_for_one_size() -> None:
    log, keys = setup()
    for minute in range(3):
        log.append(T0 + timedelta(minutes=minute))
    bundle = log.bundle(0, log.head(T0 + timedelta(hours=1)))
    other_view = log.head(T0 + timedelta(hours=1), root=b"\x07" * 32)  # same size, another tree
    assert reasons(verify_bundle(bundle, keys, trusted_head=other_view)) == {"head_mismatch"}


def test_a_head_of_another_size_asks_for_the_matching_proof() -> None:
    log, keys = setup()
    for minute in range(4):
        log.append(T0 + timedelta(minutes=minute))
    kept = log.head(T0 + timedelta(hours=1))  # size 4
    log.append(T0 + timedelta(hours=2))
    bundle = log.bundle(1, log.head(T0 + timedelta(hours=3)))  # proof against size 5
    report = verify_bundle(bundle, keys, trusted_head=kept)
    assert reasons(report) == {"inclusion_not_for_trusted_head"}
    assert "?tree_size=4" in report.failures[0].detail
    assert verify_bundle(log.bundle(1, kept, size=4), keys, trusted_head=kept).valid


def test_a_receipt_dated_after_its_head_is_refused() -> None:
    log, keys = setup()
    log.append(T0 + timedelta(hours=2))
    assert reasons(verify_bundle(log.bundle(0, log.head(T0)), keys)) == {"receipt_after_head"}


def test_a_retired_key_is_named_as_retired() -> None:
    log, _keys = setup()
    log.append(T0)
    bundle = log.bundle(0, log.head(T0 + timedelta(minutes=1)))
    report = verify_bundle(bundle, {}, retired={log.kid: T0})
    assert reasons(report) == {"key_retired", "head_key_retired"}
    assert "retired at 2026-12-01T12:00:00+00:00" in report.failures[0].detail


def test_witness_signatures_are_listed_one_by_one() -> None:
    log, keys = setup()
    payload = log.append(T0)
    head = log.head(T0 + timedelta(minutes=1))
    witness = nacl.signing.SigningKey.generate()
    good = dsse.sign(dsse.RECEIPT_PAYLOAD_TYPE, payload, witness, "marketplace-1")
    declared = [{"keyid": "marketplace-1", "public_key": to_jwk(witness.verify_key)}]

    report = verify_bundle(log.bundle(0, head, extra=(good,), witnesses=declared), keys)
    assert report.valid
    assert [(s.keyid, s.signer, s.trusted, s.holds) for s in report.signatures] == [
        (log.kid, "executor", True, True), ("marketplace-1", "witness", False, True)]
    # Trusting the witness's key is the verifier's choice.
    trusting = verify_bundle(log.bundle(0, head, extra=(good,)), {**keys, "marketplace-1": witness.verify_key})
    assert trusting.valid and trusting.signatures[1].trusted

    forged = dsse.Signature("marketplace-1", bytes(64))
    report = verify_bundle(log.bundle(0, head, extra=(forged,), witnesses=declared), keys)
    assert reasons(report) == {"witness_signature_invalid"}
    keyless = verify_bundle(log.bundle(0, head, extra=(dsse.Signature("nobody", bytes(64)),)), keys)
    assert keyless.valid and keyless.signatures[1].holds is None


def test_content_hashes_are_checked_when_given() -> None:
    log, keys = setup()
    log.append(T0)
    bundle = log.bundle(0, log.head(T0 + timedelta(minutes=1)))
    report = verify_bundle(bundle, keys, input_bytes=b"{}", output_bytes=b"[]")
    assert reasons(report) == {"input_hash_mismatch", "output_hash_mismatch"}
    assert "sha256 " + "00" * 32 in report.failures[0].detail


def test_a_non_canonical_payload_is_refused_even_when_signed() -> None:
    log, keys = setup()
    log.append(T0)
    bundle = log.bundle(0, log.head(T0 + timedelta(minutes=1)))
    loose = log.leaves[0].replace(b'{"agent_id"', b'{ "agent_id"')
    signature = dsse.sign(dsse.RECEIPT_PAYLOAD_TYPE, loose, log.key, log.kid)
    bundle["envelope"] = dsse.Envelope(dsse.RECEIPT_PAYLOAD_TYPE, loose, (signature,)).to_json()
    assert reasons(verify_bundle(bundle, keys)) == {"payload_not_canonical"}
