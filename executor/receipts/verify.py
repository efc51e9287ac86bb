"""Checking a receipt bundle offline: only public keys, the bundle, and what the caller brings.

A bundle (GET /v1/executions/{id}/receipt) is the DSSE envelope of the receipt with
every signature on it, the witnesses' public keys, an inclusion proof, and the signed
tree head that proof is against. Each check that fails adds a `Failure` whose
`reason` is a stable code (docs/receipts.md lists them) and whose `detail` says
exactly what did not hold; the CLI, the API and the log auditor all use this module.

What the caller brings is optional evidence: the input and output bytes, the task's recorded
egress list (GET /v1/executions/{id}/egress), a tree head kept from earlier. Each one given is
checked; one not given is simply not checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import nacl.signing

from executor.receipts import dsse, merkle
from executor.receipts.canonical import CanonicalizationError, canonical_json
from executor.receipts.egress import egress_problems
from executor.receipts.jwk import JwkError, from_jwk
from executor.receipts.statement import parse_rfc3339, sha256_hex, statement_problems

HEAD_FIELDS = {"log_id": str, "tree_size": int, "root_hash": str, "timestamp": str, "key_id": str}


@dataclass(frozen=True)
class Failure:
    reason: str
    detail: str


@dataclass(frozen=True)
class SignatureCheck:
    keyid: str
    signer: str  # "executor" (the key the receipt names) or "witness"
    trusted: bool  # the key is one the verifier trusts (not only the bundle's own word for it)
    holds: bool | None  # None: no public key for this signature anywhere
    detail: str = ""


@dataclass
class Report:
    failures: list[Failure] = field(default_factory=list)
    signatures: list[SignatureCheck] = field(default_factory=list)
    statement: dict[str, Any] | None = None
    head: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        return not self.failures

    def fail(self, reason: str, detail: str) -> None:
        self.failures.append(Failure(reason, detail))

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "failures": [asdict(f) for f in self.failures],
                "signatures": [asdict(s) for s in self.signatures], "receipt": self.statement,
                "tree_head": self.head}


def verify_bundle(bundle: Any, keys: Mapping[str, nacl.signing.VerifyKey], *, input_bytes: bytes | None = None,
                  output_bytes: bytes | None = None, trusted_head: Any = None,
                  retired: Mapping[str, datetime] | None = None, egress: Any = None) -> Report:
    """Every check of a receipt bundle against the trusted `keys` (kid → key). `egress`, when
    given, is the execution's recorded egress list, checked against the receipt's digest of it."""
    report = Report()
    if not isinstance(bundle, dict) or not all(k in bundle for k in ("envelope", "inclusion_proof", "tree_head")):
        report.fail("bundle_malformed", "a receipt bundle is an object with envelope, inclusion_proof and tree_head")
        return report
    envelope, statement = _check_envelope(bundle["envelope"], report)
    if envelope is None or statement is None:
        return report
    report.statement = statement
    _check_signatures(envelope, statement, bundle.get("witnesses") or [], keys, retired or {}, report)
    _check_content(statement, input_bytes, output_bytes, report)
    if egress is not None:
        _check_egress(statement, egress, report)
    head = check_head(bundle["tree_head"], keys, report, retired=retired)
    if head is not None:
        report.head = head
        _check_inclusion(bundle["inclusion_proof"], envelope.payload, statement, head, report)
    if trusted_head is not None:
        _check_against_trusted_head(trusted_head, statement, head, keys, report)
    return report


def check_head(data: Any, keys: Mapping[str, nacl.signing.VerifyKey], report: Report, *, prefix: str = "head",
               retired: Mapping[str, datetime] | None = None) -> dict[str, Any] | None:
    """A signed tree head's statement when its envelope, payload and signature hold; else None."""
    try:
        envelope = dsse.Envelope.from_json(data)
    except dsse.EnvelopeError as exc:
        report.fail(f"{prefix}_malformed", f"the tree head is not a DSSE envelope: {exc}")
        return None
    if envelope.payload_type != dsse.TREE_HEAD_PAYLOAD_TYPE:
        report.fail(f"{prefix}_payload_type_mismatch",
                    f"payloadType is {envelope.payload_type!r}, not {dsse.TREE_HEAD_PAYLOAD_TYPE!r}")
        return None
    statement = _canonical_payload(envelope.payload, report, prefix=prefix)
    if statement is None:
        return None
    wrong = [f"{name} must be {kind.__name__}" for name, kind in HEAD_FIELDS.items()
             if not isinstance(statement.get(name), kind) or isinstance(statement.get(name), bool)]
    if wrong or set(statement) != set(HEAD_FIELDS) or not _is_time(statement["timestamp"]) \
            or not _is_digest(statement["root_hash"]):
        report.fail(f"{prefix}_invalid", "the tree head statement is not well formed: "
                    + ("; ".join(wrong) or f"fields {sorted(statement)}, a timestamp and a hex root_hash expected"))
        return None
    signature = next((s for s in envelope.signatures if s.keyid == statement["key_id"]), None)
    key = keys.get(statement["key_id"])
    if signature is None:
        report.fail(f"{prefix}_signature_missing", f"no signature by the key the head names ({statement['key_id']})")
    elif key is None:
        reason = "key_retired" if retired and statement["key_id"] in retired else "unknown_key"
        report.fail(f"{prefix}_{reason}", f"the head is signed by {statement['key_id']}, which is not among the "
                    f"trusted keys ({', '.join(sorted(keys)) or 'none'})" + _retired_note(statement["key_id"], retired))
    elif not dsse.signature_holds(envelope, signature, key):
        report.fail(f"{prefix}_signature_invalid",
                    f"the signature of {signature.keyid} over the tree head does not hold")
    else:
        return statement
    return None


def check_consistency(old: dict[str, Any], new: dict[str, Any], proof: list[bytes], report: Report) -> None:
    """Two verified head statements of one log: the newer must extend the older."""
    if old["log_id"] != new["log_id"]:
        report.fail("log_mismatch", f"heads of two logs: {old['log_id']} and {new['log_id']}")
    elif new["tree_size"] < old["tree_size"]:
        report.fail("log_shrank", f"the log had {old['tree_size']} leaves and now claims {new['tree_size']}")
    elif new["tree_size"] == old["tree_size"]:
        if new["root_hash"] != old["root_hash"]:
            report.fail("head_mismatch", f"two different roots for tree size {new['tree_size']}: the log forked")
    elif not merkle.verify_consistency(old["tree_size"], new["tree_size"], proof, bytes.fromhex(old["root_hash"]),
                                       bytes.fromhex(new["root_hash"])):
        report.fail("consistency_proof_invalid", f"the tree of size {new['tree_size']} does not extend the one of "
                    f"size {old['tree_size']}: the log was rewritten behind the earlier head")


def _check_envelope(data: Any, report: Report) -> tuple[dsse.Envelope | None, dict[str, Any] | None]:
    try:
        envelope = dsse.Envelope.from_json(data)
    except dsse.EnvelopeError as exc:
        report.fail("envelope_malformed", f"not a DSSE envelope: {exc}")
        return None, None
    if envelope.payload_type != dsse.RECEIPT_PAYLOAD_TYPE:
        report.fail("payload_type_mismatch",
                    f"payloadType is {envelope.payload_type!r}, not {dsse.RECEIPT_PAYLOAD_TYPE!r}")
        return envelope, None
    statement = _canonical_payload(envelope.payload, report, prefix="payload")
    if statement is None:
        return envelope, None
    problems = statement_problems(statement)
    if problems:
        report.fail("payload_invalid", "the receipt statement is not well formed: " + "; ".join(problems))
        return envelope, None
    return envelope, statement


def _canonical_payload(payload: bytes, report: Report, *, prefix: str) -> dict[str, Any] | None:
    try:
        statement = json.loads(payload)
        canonical = canonical_json(statement)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.fail(f"{prefix}_not_json", f"the payload is not JSON: {exc}")
        return None
    except CanonicalizationError as exc:
        report.fail(f"{prefix}_not_canonical", f"the payload cannot be RFC 8785 JSON: {exc}")
        return None
    if canonical != payload:
        report.fail(f"{prefix}_not_canonical", "the payload is not in RFC 8785 canonical form")
        return None
    if not isinstance(statement, dict):
        report.fail(f"{prefix}_invalid", "the payload is not a JSON object")
        return None
    return statement


def _check_signatures(envelope: dsse.Envelope, statement: dict[str, Any], witnesses: Any,
                      keys: Mapping[str, nacl.signing.VerifyKey], retired: Mapping[str, datetime],
                      report: Report) -> None:
    declared = _witness_keys(witnesses)
    named = statement["key_id"]
    for signature in envelope.signatures:
        signer = "executor" if signature.keyid == named else "witness"
        key, trusted = keys.get(signature.keyid), True
        if key is None:
            key, trusted = declared.get(signature.keyid), False
        holds = dsse.signature_holds(envelope, signature, key) if key is not None else None
        detail = "" if key is not None else "no public key for this key id (trusted or in the bundle)"
        report.signatures.append(SignatureCheck(signature.keyid, signer, trusted, holds, detail))
        if holds is False:  # a key the verifier trusts, or a witness key the bundle itself declares
            reason = "signature_invalid" if trusted else "witness_signature_invalid"
            report.fail(reason, f"the signature of {signature.keyid} ({signer}) does not hold over this payload")
    mine = [check for check in report.signatures if check.signer == "executor"]
    if not mine:
        report.fail("signature_missing", f"no signature by the key the receipt names ({named})")
    elif not mine[0].trusted:
        reason = "key_retired" if named in retired else "unknown_key"
        report.fail(reason, f"the receipt is signed by {named}, which is not among the trusted keys "
                    f"({', '.join(sorted(keys)) or 'none'})" + _retired_note(named, retired))


def _check_content(statement: dict[str, Any], input_bytes: bytes | None, output_bytes: bytes | None,
                   report: Report) -> None:
    for name, given in (("input", input_bytes), ("output", output_bytes)):
        if given is None:
            continue
        expected = statement[f"{name}_sha256"]
        if expected is None:
            report.fail(f"{name}_hash_mismatch", f"the receipt records no {name} (the task never ran), "
                        f"but {len(given)} bytes were given")
        elif sha256_hex(given) != expected:
            report.fail(f"{name}_hash_mismatch", f"the {name} given ({len(given)} bytes, sha256 {sha256_hex(given)})"
                        f" is not the one the receipt records ({statement[f'{name}_bytes']} bytes, sha256 {expected})")


def _check_egress(statement: dict[str, Any], egress: Any, report: Report) -> None:
    if "egress" not in statement:
        given = f"a list of {len(egress)} requests" if isinstance(egress, list) else "an egress list"
        report.fail("egress_mismatch", f"the receipt records no egress (its agent declared none), but {given} "
                    "was given")
        return
    problems = egress_problems(statement["egress"], egress)
    if problems:
        report.fail("egress_mismatch", "; ".join(problems))


def _check_inclusion(proof: Any, payload: bytes, statement: dict[str, Any], head: dict[str, Any],
                     report: Report) -> None:
    parsed = _parse_proof(proof)
    if parsed is None:
        report.fail("inclusion_proof_malformed", "inclusion_proof is {log_index, tree_size, hashes: [hex, …]}")
        return
    index, size, hashes = parsed
    if statement["log_id"] != head["log_id"]:
        report.fail("log_mismatch", f"the receipt is of log {statement['log_id']}, the head of log {head['log_id']}")
    if index != statement["log_index"]:
        report.fail("inclusion_index_mismatch",
                    f"the proof is for leaf {index}, the receipt says {statement['log_index']}")
    if size != head["tree_size"]:
        report.fail("inclusion_size_mismatch", f"the proof is for tree size {size}, the head has {head['tree_size']}")
    elif not merkle.verify_inclusion(merkle.leaf_hash(payload), index, size, hashes, bytes.fromhex(head["root_hash"])):
        report.fail("inclusion_proof_invalid", f"the receipt is not leaf {index} of the tree of size {size} whose "
                    f"root the head signs")
    if parse_rfc3339(statement["issued_at"]) > parse_rfc3339(head["timestamp"]):
        report.fail("receipt_after_head", f"issued at {statement['issued_at']}, after the head that holds it "
                    f"({head['timestamp']})")


def _check_against_trusted_head(data: Any, statement: dict[str, Any], head: dict[str, Any] | None,
                                keys: Mapping[str, nacl.signing.VerifyKey], report: Report) -> None:
    """A head the verifier kept from earlier: the bundle's log must agree with it."""
    trusted = check_head(data, keys, report, prefix="trusted_head")
    if trusted is None:
        return
    if trusted["log_id"] != statement["log_id"]:
        report.fail("log_mismatch",
                    f"the given head is of log {trusted['log_id']}, the receipt of {statement['log_id']}")
    elif trusted["tree_size"] <= statement["log_index"]:
        # The receipt was appended after that head was signed: it cannot be older than it.
        if parse_rfc3339(statement["issued_at"]) < parse_rfc3339(trusted["timestamp"]):
            report.fail("backdated", f"leaf {statement['log_index']} was appended after the head of size "
                        f"{trusted['tree_size']} signed at {trusted['timestamp']}, yet claims {statement['issued_at']}")
    elif head is not None and trusted["tree_size"] == head["tree_size"]:
        if trusted["root_hash"] != head["root_hash"]:
            report.fail("head_mismatch", f"the given head and the bundle's head both have size {head['tree_size']} "
                        "but different roots: the log shows different trees to different parties")
    elif head is not None:
        report.fail("inclusion_not_for_trusted_head",
                    f"the bundle proves inclusion in the tree of size {head['tree_size']}, not in the given head's "
                    f"{trusted['tree_size']}: fetch the receipt with ?tree_size={trusted['tree_size']}")


def _witness_keys(witnesses: Any) -> dict[str, nacl.signing.VerifyKey]:
    found: dict[str, nacl.signing.VerifyKey] = {}
    for witness in witnesses if isinstance(witnesses, list) else []:
        if isinstance(witness, dict) and isinstance(witness.get("keyid"), str):
            try:
                found[witness["keyid"]] = from_jwk(witness.get("public_key"))
            except JwkError:
                continue
    return found


def _parse_proof(proof: Any) -> tuple[int, int, list[bytes]] | None:
    if not isinstance(proof, dict):
        return None
    index, size, hashes = proof.get("log_index"), proof.get("tree_size"), proof.get("hashes")
    if not (isinstance(index, int) and isinstance(size, int) and isinstance(hashes, list)
            and all(isinstance(h, str) and _is_digest(h) for h in hashes)):
        return None
    return index, size, [bytes.fromhex(h) for h in hashes]


def _is_digest(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_time(value: str) -> bool:
    try:
        parse_rfc3339(value)
    except ValueError:
        return False
    return True


def _retired_note(kid: str, retired: Mapping[str, datetime] | None) -> str:
    return f"; it was retired at {retired[kid].isoformat()}" if retired and kid in retired else ""
