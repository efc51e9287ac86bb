"""Receipts end to end through HTTP: issued for every final execution, verifiable by
implementations that are not ours, and refused with a precise reason once tampered with."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import uuid
from typing import Any

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from executor.receipts.jwk import parse_key_set
from executor.receipts.verify import verify_bundle
from tests.receipts.outside import verify_independently

WORDCOUNT_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


async def receipt_of(api, execution_id: str, **query: Any) -> dict[str, Any]:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    status, bundle, _ = await api.get(f"/v1/executions/{execution_id}/receipt{suffix}")
    assert status == 200, bundle
    return bundle


async def public_keys(api) -> dict[str, Any]:
    status, jwks, _ = await api.as_token(None).get("/v1/keys")
    assert status == 200, jwks
    return jwks


async def completed_run(api, images) -> dict[str, Any]:
    agent_id = await api.register(None, image=images["wordcount"], input_schema=WORDCOUNT_SCHEMA)
    record = await api.run(agent_id, {"text": "signed, sealed, delivered — ünïcödé"})
    assert record["status"] == "COMPLETED", record
    return record


def statement_of(bundle: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(bundle["envelope"]["payload"]))


async def test_a_receipt_binds_the_run_and_outside_verifiers_accept_it(api, images) -> None:
    record = await completed_run(api, images)
    bundle = await receipt_of(api, record["id"])
    jwks = await public_keys(api)
    status, agent, _ = await api.get(f"/v1/agents/{record['agent_id']}")
    stdin = await api.get_bytes(f"/v1/executions/{record['id']}/input")
    stdout = await api.get_bytes(f"/v1/executions/{record['id']}/stdout")
    assert json.loads(stdin) == record["input"] and json.loads(stdout) == record["output"]

    # A verifier written from the specs, sharing no code with executor.
    statement = verify_independently(bundle, jwks, stdin=stdin, stdout=stdout)
    assert statement["execution_id"] == record["id"] and statement["status"] == "COMPLETED"
    assert statement["agent_id"] == record["agent_id"] and statement["agent_version"] == record["agent_version"]
    assert statement["image_digest"] == agent["image_digest"] and statement["module_sha256"] is None
    assert statement["oci_runtime"] == "runc" and statement["exit_code"] == 0 and statement["error_type"] is None
    assert statement["input_bytes"] == len(stdin) and statement["output_bytes"] == len(stdout)
    assert statement["usage"] == {k: record["usage"][k] for k in ("wall_ms", "cpu_ms", "peak_memory_bytes",
                                                                   "fuel_consumed")}
    assert statement["cost"] is None  # the agent has no pricing
    assert statement["started_at"].startswith(record["started_at"][:19])

    # securesystemslib's DSSE and Ed25519 code.
    jwk = next(k for k in jwks["keys"] if k["kid"] == statement["key_id"])
    public = base64.urlsafe_b64decode(jwk["x"] + "=")
    key = SSlibKey(jwk["kid"], "ed25519", "ed25519", {"public": public.hex()})
    # (from_dict consumes its input)
    verified = SslibEnvelope.from_dict(copy.deepcopy(bundle["envelope"])).verify([key], 1)
    assert set(verified) == {jwk["kid"]}

    # And executor's own verifier, as a service (no token needed).
    status, report, _ = await api.as_token(None).post("/v1/receipts/verify", json={
        "receipt": bundle, "input_base64": base64.b64encode(stdin).decode(),
        "output_base64": base64.b64encode(stdout).decode()})
    assert status == 200 and report["valid"] is True, report
    assert report["signatures"] == [{"keyid": jwk["kid"], "signer": "executor", "trusted": True, "holds": True,
                                     "detail": ""}]


def _flip_inside(payload: bytes, field: str) -> bytes:
    """The payload with one character of `field`'s value changed for another of its kind,
    so the JSON stays valid and canonical: only the signature and the log can tell."""
    statement = json.loads(payload)
    encoded = json.dumps(statement[field], separators=(",", ":"), ensure_ascii=False).encode()
    start = payload.index(b'"' + field.encode() + b'":' + encoded) + len(field) + 3
    for offset in range(len(encoded)):
        char = payload[start + offset:start + offset + 1]
        if char.isdigit() or char in b"abcdef":
            replacement = b"2" if char == b"1" else b"1"  # never a leading zero
            return payload[:start + offset] + replacement + payload[start + offset + 1:]
        if char.isalpha():
            replacement = b"X" if char != b"X" else b"Y"
            return payload[:start + offset] + replacement + payload[start + offset + 1:]
    raise AssertionError(f"nothing to flip in {field}: {encoded!r}")


async def test_a_flipped_byte_anywhere_fails_with_a_precise_reason(api, images) -> None:
    await completed_run(api, images)  # so that the log holds at least two leaves: a proof with hashes
    record = await completed_run(api, images)
    bundle = await receipt_of(api, record["id"])
    keys = parse_key_set(await public_keys(api))
    assert verify_bundle(bundle, keys).valid
    payload = base64.b64decode(bundle["envelope"]["payload"])

    for field in statement_of(bundle):
        if statement_of(bundle)[field] is None or isinstance(statement_of(bundle)[field], dict):
            continue
        tampered = copy.deepcopy(bundle)
        tampered["envelope"]["payload"] = base64.b64encode(_flip_inside(payload, field)).decode()
        reasons = {f.reason for f in verify_bundle(tampered, keys).failures}
        # A changed log_index also moves the proof's leaf; a changed key id names a key that did not sign.
        extra = {"log_index": {"inclusion_index_mismatch"}, "key_id": {"signature_missing"},
                 "log_id": {"log_mismatch"}}.get(field, set())
        expected = {"signature_invalid", "inclusion_proof_invalid"} | extra
        if field == "receipt_version":  # a version this verifier does not know is refused before any signature
            expected = {"payload_invalid"}
        assert reasons == expected, (field, reasons)

    def reasons_after(change) -> set[str]:
        tampered = copy.deepcopy(bundle)
        change(tampered)
        report = verify_bundle(tampered, keys)
        assert not report.valid
        return {f.reason for f in report.failures}

    def flip_b64(value: str) -> str:
        raw = bytearray(base64.b64decode(value))
        raw[len(raw) // 2] ^= 0x01
        return base64.b64encode(bytes(raw)).decode()

    def flip_signature(part: str):
        return lambda b: b[part]["signatures"][0].update(sig=flip_b64(b[part]["signatures"][0]["sig"]))

    assert bundle["inclusion_proof"]["hashes"], "a log of one leaf: no proof hash to flip"
    assert reasons_after(flip_signature("envelope")) == {"signature_invalid"}
    assert reasons_after(lambda b: b["envelope"].update(payloadType="application/json")) == {"payload_type_mismatch"}
    assert "signature_missing" in reasons_after(lambda b: b["envelope"]["signatures"][0].update(keyid="someone-else"))
    flipped_hash = lambda b: b["inclusion_proof"]["hashes"].__setitem__(0, "00" * 32)  # noqa: E731
    assert reasons_after(flipped_hash) == {"inclusion_proof_invalid"}
    assert reasons_after(flip_signature("tree_head")) == {"head_signature_invalid"}
    head_payload = bytearray(base64.b64decode(bundle["tree_head"]["payload"]))
    digit = head_payload.index(b'"root_hash":"') + 13  # another hex digit: still a well-formed head
    head_payload[digit] = ord("0") if head_payload[digit] != ord("0") else ord("1")
    assert "head_signature_invalid" in reasons_after(
        lambda b: b["tree_head"].update(payload=base64.b64encode(bytes(head_payload)).decode()))
    assert reasons_after(lambda b: b.pop("tree_head")) == {"bundle_malformed"}


async def test_a_swapped_payload_and_a_proof_against_another_head_fail(api, images) -> None:
    first = await receipt_of(api, (await completed_run(api, images))["id"])
    second = await receipt_of(api, (await completed_run(api, images))["id"])
    keys = parse_key_set(await public_keys(api))

    swapped = copy.deepcopy(first)
    swapped["envelope"]["payload"] = second["envelope"]["payload"]
    assert "signature_invalid" in {f.reason for f in verify_bundle(swapped, keys).failures}

    # The first receipt's proof, shown against the second's (larger) head.
    other_head = copy.deepcopy(first)
    other_head["tree_head"] = second["tree_head"]
    reasons = {f.reason for f in verify_bundle(other_head, keys).failures}
    assert reasons == {"inclusion_size_mismatch"}, reasons
    # ...and with the size claimed to match, the path leads to another root.
    other_head["inclusion_proof"]["tree_size"] = statement_of({"envelope": second["tree_head"]})["tree_size"]
    assert {f.reason for f in verify_bundle(other_head, keys).failures} == {"inclusion_proof_invalid"}

    # A receipt is re-proven against any later signed head on request.
    later = statement_of({"envelope": second["tree_head"]})["tree_size"]
    again = await receipt_of(api, statement_of(first)["execution_id"], tree_size=later)
    assert again["inclusion_proof"]["tree_size"] == later and verify_bundle(again, keys).valid


async def test_an_unknown_key_fails(api, images) -> None:
    import nacl.signing

    from executor.receipts.jwk import key_id

    bundle = await receipt_of(api, (await completed_run(api, images))["id"])
    stranger = nacl.signing.SigningKey.generate().verify_key
    reasons = {f.reason for f in verify_bundle(bundle, {key_id(stranger): stranger}).failures}
    assert reasons == {"unknown_key", "head_unknown_key"}, reasons


async def test_every_final_state_has_its_receipt(api) -> None:
    cases = {
        "FAILED": (["sh", "-c", "echo oops >&2; exit 3"], {}),
        "TIMEOUT": (["sleep", "30"], {"timeout_s": 0.5}),
    }
    for status, (command, limits) in cases.items():
        agent_id = await api.register(command, limits=limits or None)
        record = await api.run(agent_id, wait=30)
        assert record["status"] == status, record
        statement = statement_of(await receipt_of(api, record["id"]))
        assert statement["status"] == status and statement["error_type"] == record["error"]["type"]
        assert statement["exit_code"] == record["exit_code"]

    sleeper = await api.register(["sleep", "30"], limits={"timeout_s": 60})
    status, running, _ = await api.post("/v1/executions", json={"agent_id": sleeper, "input": {}})
    for _ in range(100):
        _, current, _ = await api.get(f"/v1/executions/{running['id']}")
        if current["status"] == "RUNNING":
            break
        await asyncio.sleep(0.1)
    status, cancelled, _ = await api.post(f"/v1/executions/{running['id']}/cancel")
    assert cancelled["status"] == "CANCELLED", cancelled
    statement = statement_of(await receipt_of(api, running["id"]))
    assert statement["status"] == "CANCELLED" and statement["error_type"] == "cancelled"


async def test_no_receipt_before_the_end_and_none_for_others(api, user_api) -> None:
    agent_id = await api.register(["sleep", "30"], limits={"timeout_s": 60})
    status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
    status, problem, headers = await api.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 409 and problem["type"] == "urn:executor:problem:receipt_unavailable", problem
    assert headers["Content-Type"].startswith("application/problem+json")
    await api.post(f"/v1/executions/{record['id']}/cancel")
    status, problem, _ = await user_api.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 404, problem
    status, problem, _ = await api.get(f"/v1/executions/{uuid.uuid4()}/receipt")
    assert status == 404


async def test_the_log_answers_proofs_and_refuses_bad_ranges(api, images) -> None:
    from executor.receipts import merkle

    await completed_run(api, images)
    anonymous = api.as_token(None)
    status, head, _ = await anonymous.get("/v1/log/head")
    assert status == 200 and head["payloadType"] == "application/vnd.executor.tree-head+json"
    size = statement_of({"envelope": head})["tree_size"]
    assert size >= 1
    status, proof, _ = await anonymous.get(f"/v1/log/proof/inclusion?index=0&size={size}")
    assert status == 200 and proof["tree_size"] == size
    status, consistency, _ = await anonymous.get(f"/v1/log/proof/consistency?from=1&to={size}")
    assert status == 200 and len(consistency["hashes"]) <= 2 * 64
    root = bytes.fromhex(statement_of({"envelope": head})["root_hash"])
    assert merkle.verify_consistency(size, size, [], root, root)
    for bad in (f"inclusion?index={size}&size={size}", f"inclusion?index=0&size={size + 1}", "inclusion?index=0",
                f"consistency?from=0&to={size}", "consistency?from=2&to=1", "inclusion?index=-1&size=1"):
        status, problem, _ = await anonymous.get(f"/v1/log/proof/{bad}")
        assert status == 422 and problem["type"] == "urn:executor:problem:request_invalid", (bad, problem)


@pytest.mark.parametrize("body", [{"receipt": {}}, {"receipt": "nope"},
                                  {"receipt": {"envelope": 1, "inclusion_proof": 1, "tree_head": 1}},
                                  {"receipt": {}, "egress": [{"seq": 1, "bytes_out": 0, "bytes_in": 0}]},
                                  {"receipt": {}, "egress": None}])
async def test_verify_service_reports_malformed_bundles(api, body) -> None:
    status, report, _ = await api.as_token(None).post("/v1/receipts/verify", json=body)
    assert status == 200 and report["valid"] is False and report["failures"], report
    status, problem, _ = await api.as_token(None).post("/v1/receipts/verify", json={"receipts": {}})
    assert status == 422 and problem["type"] == "urn:executor:problem:request_invalid"
    for egress in ("[]", [1], {"data": []}):
        status, problem, _ = await api.as_token(None).post("/v1/receipts/verify",
                                                           json={"receipt": {}, "egress": egress})
        assert status == 422 and problem["type"] == "urn:executor:problem:request_invalid", (egress, problem)


async def test_a_witness_countersigns_and_each_signature_is_listed(api, images) -> None:
    import nacl.signing

    from executor.receipts.jwk import to_jwk

    status, issued, _ = await api.post("/v1/tokens", json={"role": "service", "subject": "marketplace"})
    marketplace = api.as_token(issued["token"])
    record = await completed_run(marketplace, images)  # a witness attests only what it may see: here, its own run
    bundle = await receipt_of(api, record["id"])
    envelope = bundle["envelope"]
    payload = base64.b64decode(envelope["payload"])
    witness = nacl.signing.SigningKey.generate()
    # The witness signs the same DSSE PAE bytes, computed here from the spec.
    payload_type = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    attestation = {"keyid": "marketplace-2026", "sig": base64.b64encode(witness.sign(pae).signature).decode(),
                   "public_key": to_jwk(witness.verify_key)}

    status, problem, _ = await api.as_token((await api.post("/v1/tokens", json={"role": "user", "subject": "u"}))[1]
                                            ["token"]).post(f"/v1/executions/{record['id']}/receipt/attestations",
                                                            json=attestation)
    assert status == 403, problem
    forged = dict(attestation, sig=base64.b64encode(witness.sign(b"something else").signature).decode())
    status, problem, _ = await marketplace.post(f"/v1/executions/{record['id']}/receipt/attestations", json=forged)
    assert status == 422 and problem["type"] == "urn:executor:problem:attestation_invalid", problem
    mine = dict(attestation, keyid=statement_of(bundle)["key_id"])
    status, problem, _ = await marketplace.post(f"/v1/executions/{record['id']}/receipt/attestations", json=mine)
    assert status == 422 and "executor's own keys" in problem["detail"], problem
    status, problem, _ = await marketplace.post(f"/v1/executions/{record['id']}/receipt/attestations",
                                                json=dict(attestation, public_key={"kty": "RSA"}))
    assert status == 422 and problem["type"] == "urn:executor:problem:request_invalid", problem

    status, attested, _ = await marketplace.post(f"/v1/executions/{record['id']}/receipt/attestations",
                                                 json=attestation)
    assert status == 201, attested
    status, again, _ = await marketplace.post(f"/v1/executions/{record['id']}/receipt/attestations", json=attestation)
    assert status == 201 and again["envelope"] == attested["envelope"]  # the same attestation twice is one
    assert [s["keyid"] for s in attested["envelope"]["signatures"]] == [statement_of(bundle)["key_id"],
                                                                        "marketplace-2026"]
    assert attested["witnesses"][0]["attested_by"] == "service:marketplace"

    status, report, _ = await api.as_token(None).post("/v1/receipts/verify", json={"receipt": attested})
    assert report["valid"] is True, report
    assert [(s["keyid"], s["signer"], s["trusted"], s["holds"]) for s in report["signatures"]] == [
        (statement_of(bundle)["key_id"], "executor", True, True), ("marketplace-2026", "witness", False, True)]

    # securesystemslib checks both signatures with a threshold of two.
    jwk = next(k for k in (await public_keys(api))["keys"] if k["kid"] == statement_of(bundle)["key_id"])
    keys = [SSlibKey(jwk["kid"], "ed25519", "ed25519", {"public": base64.urlsafe_b64decode(jwk["x"] + "=").hex()}),
            SSlibKey("marketplace-2026", "ed25519", "ed25519", {"public": bytes(witness.verify_key).hex()})]
    assert set(SslibEnvelope.from_dict(copy.deepcopy(attested["envelope"])).verify(keys, 2)) == {
        jwk["kid"], "marketplace-2026"}
