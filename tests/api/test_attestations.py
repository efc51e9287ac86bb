"""A witness's attestation answers like the receipt it countersigns: whoever may not read
GET /v1/executions/{id}/receipt gets the same 404 from POST .../receipt/attestations, and an
execution that is not final yet gets the same 409 `receipt_unavailable`."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import nacl.signing

from executor.receipts.jwk import to_jwk
from tests.conftest import Api

WITNESS = nacl.signing.SigningKey.generate()


def attestation(bundle: dict[str, Any] | None, keyid: str = "witness-1") -> dict[str, Any]:
    """A witness's countersignature over a receipt's DSSE PAE bytes (over nothing much without one)."""
    pae = b"no receipt"
    if bundle is not None:
        payload_type = bundle["envelope"]["payloadType"].encode()
        payload = base64.b64decode(bundle["envelope"]["payload"])
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    return {"keyid": keyid, "sig": base64.b64encode(WITNESS.sign(pae).signature).decode(),
            "public_key": to_jwk(WITNESS.verify_key)}


async def attest(api: Api, execution_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, answer, _ = await api.post(f"/v1/executions/{execution_id}/receipt/attestations", json=body)
    return status, answer


async def test_a_caller_who_may_not_see_the_execution_gets_the_receipts_404(api: Api) -> None:
    agent_id = await api.register(["cat"])
    record = await api.run(agent_id, {"seen": "by the operator only"})
    assert record["status"] == "COMPLETED", record
    status, bundle, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 200, bundle
    stranger = await api.new_token("service")  # a service sees its own executions and its users'

    status, refused, _ = await stranger.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 404, refused
    status, problem = await attest(stranger, record["id"], attestation(bundle))
    assert (status, problem["type"]) == (404, refused["type"]), problem
    status, again, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
    assert again["witnesses"] == [], again  # nothing was kept

    # An id that names nothing, or is no id at all: the same 404 both ways.
    for missing in (str(uuid.uuid4()), "not-an-id"):
        status, refused, _ = await stranger.get(f"/v1/executions/{missing}/receipt")
        assert status == 404, refused
        status, problem = await attest(stranger, missing, attestation(bundle))
        assert (status, problem["type"]) == (404, refused["type"]), (missing, problem)

    # Whoever may see it may attest: the operator, and the service that ran it.
    status, attested = await attest(api, record["id"], attestation(bundle))
    assert status == 201 and [w["keyid"] for w in attested["witnesses"]] == ["witness-1"], attested
    own_agent = await stranger.register(["cat"])
    mine = await stranger.run(own_agent, {"seen": "by its service"})
    status, own_bundle, _ = await stranger.get(f"/v1/executions/{mine['id']}/receipt")
    assert status == 200, own_bundle
    status, attested = await attest(stranger, mine["id"], attestation(own_bundle, "witness-2"))
    assert status == 201 and attested["witnesses"][0]["attested_by"] == f"service:{stranger.subject}", attested


async def test_an_execution_not_final_yet_is_the_receipts_409(api: Api) -> None:
    agent_id = await api.register(["sleep", "30"], limits={"timeout_s": 60})
    status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
    assert status == 202, record
    try:
        status, unavailable, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
        assert status == 409 and unavailable["type"] == "urn:executor:problem:receipt_unavailable", unavailable
        status, problem = await attest(api, record["id"], attestation(None))
        assert (status, problem["type"]) == (409, unavailable["type"]), problem
    finally:
        await api.post(f"/v1/executions/{record['id']}/cancel")
