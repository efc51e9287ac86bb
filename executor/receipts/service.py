"""Receipts as callers see them: bundles with their proofs, witnesses' attestations,
the published keys, the log's heads and proofs, and verification as a service."""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import nacl.signing

from executor.errors import (
    AttestationInvalid,
    Conflict,
    NotFound,
    ReceiptUnavailable,
    RequestInvalid,
)
from executor.receipts import dsse, log
from executor.receipts.jwk import JwkError, from_jwk, key_set
from executor.receipts.keys import Signer
from executor.receipts.verify import Report, verify_bundle
from executor.records.principals import Principal
from executor.storage import executions as execution_sql
from executor.storage import receipts as receipt_sql

_ATTESTATION_FIELDS = {"keyid", "sig", "public_key"}
_VERIFY_FIELDS = {"receipt", "input_base64", "output_base64", "head", "egress"}


class Receipts:
    """What callers read of receipts and the log. The signer signs tree heads; the receipts
    themselves are issued when an execution finishes (executions/finish.py)."""

    def __init__(self, db: asyncpg.Pool, signer: Signer) -> None:
        self.db = db
        self.signer = signer

    async def bundle(self, principal: Principal, execution_id: str, *, tree_size: int | None = None) -> dict[str, Any]:
        """The receipt of a final execution the caller may see, with its inclusion proof against a
        signed head: the newest one, or the one of `tree_size` when asked."""
        record = await execution_sql.get_visible(self.db, principal, execution_id)
        return await self._bundle(record.id, tree_size)

    async def _bundle(self, execution_id: uuid.UUID, tree_size: int | None) -> dict[str, Any]:
        stored = await receipt_sql.get_receipt(self.db, execution_id)
        if stored is None:
            raise ReceiptUnavailable(f"execution {execution_id} is not final yet")
        if tree_size is None:
            head = await log.head_covering(self.db, self.signer, stored.log_index)
        else:
            found = await log.head_of_size(self.db, tree_size)
            if found is None:
                raise NotFound(f"no signed tree head of size {tree_size}")
            if found.tree_size <= stored.log_index:
                raise RequestInvalid(f"the head of size {tree_size} predates leaf {stored.log_index}")
            head = found
        witnesses = await receipt_sql.attestations(self.db, execution_id)
        signatures = (dsse.Signature(stored.keyid, stored.sig), *(dsse.Signature(w.keyid, w.sig) for w in witnesses))
        envelope = dsse.Envelope(dsse.RECEIPT_PAYLOAD_TYPE, stored.payload, signatures)
        hashes = await log.inclusion_proof(self.db, stored.log_index, head.tree_size)
        return {
            "envelope": envelope.to_json(),
            "witnesses": [{"keyid": w.keyid, "public_key": w.public_key, "attested_by": w.attested_by,
                           "attested_at": w.created_at.isoformat().replace("+00:00", "Z")} for w in witnesses],
            "inclusion_proof": {"log_index": stored.log_index, "tree_size": head.tree_size,
                                "hashes": [h.hex() for h in hashes]},
            "tree_head": head.to_json(),
        }

    async def attest(self, principal: Principal, execution_id: str, body: Any) -> dict[str, Any]:
        """A witness's countersignature over the receipt's PAE bytes, kept when it holds. Refused
        as GET .../receipt refuses: NotFound for an execution the caller may not see, and
        ReceiptUnavailable for one not final yet."""
        parsed = (await execution_sql.get_visible(self.db, principal, execution_id)).id
        stored = await receipt_sql.get_receipt(self.db, parsed)
        if stored is None:
            raise ReceiptUnavailable(f"execution {parsed} is not final yet")
        keyid, sig, key, jwk = _attestation(body)
        if keyid in await self._published_kids():
            raise AttestationInvalid(f"{keyid} is one of executor's own keys; a witness signs with its own")
        envelope = dsse.Envelope(dsse.RECEIPT_PAYLOAD_TYPE, stored.payload, (dsse.Signature(keyid, sig),))
        if not dsse.signature_holds(envelope, envelope.signatures[0], key):
            raise AttestationInvalid("the signature does not hold over the receipt's DSSE PAE bytes "
                                     f"(payloadType {dsse.RECEIPT_PAYLOAD_TYPE})")
        attestation = receipt_sql.StoredAttestation(keyid, sig, jwk, principal.party, datetime.now(UTC))
        if not await receipt_sql.insert_attestation(self.db, parsed, attestation):
            existing = {w.keyid: w for w in await receipt_sql.attestations(self.db, parsed)}[keyid]
            if existing.sig != sig:
                raise Conflict(f"{keyid} has already attested this receipt with another signature")
        return await self._bundle(parsed, None)

    async def key_set(self) -> dict[str, Any]:
        """The published, unretired keys as a JWK set (RFC 7517; OKP Ed25519, RFC 8037)."""
        published = await receipt_sql.published_keys(self.db)
        return key_set(nacl.signing.VerifyKey(k.public_key) for k in published)

    async def trusted_keys(self) -> tuple[dict[str, nacl.signing.VerifyKey], dict[str, datetime]]:
        """Unretired keys by kid, and when each retired key was retired."""
        published = await receipt_sql.published_keys(self.db, include_retired=True)
        keys = {k.kid: nacl.signing.VerifyKey(k.public_key) for k in published if k.retired_at is None}
        return keys, {k.kid: k.retired_at for k in published if k.retired_at is not None}

    async def verify(self, body: Any) -> Report:
        """POST /v1/receipts/verify: the offline checks, against this service's published keys."""
        if not isinstance(body, dict) or "receipt" not in body or set(body) - _VERIFY_FIELDS:
            raise RequestInvalid("send {receipt, input_base64?, output_base64?, head?, egress?}",
                                 errors=[{"pointer": "", "detail": f"fields: {', '.join(sorted(_VERIFY_FIELDS))}"}])
        egress = body.get("egress")
        if egress is not None and not (isinstance(egress, list) and all(isinstance(e, dict) for e in egress)):
            raise RequestInvalid("egress is the execution's egress list (GET /v1/executions/{id}/egress): "
                                 "an array of objects", errors=[{"pointer": "/egress", "detail": "array of objects"}])
        keys, retired = await self.trusted_keys()
        return verify_bundle(body["receipt"], keys, input_bytes=_base64(body, "input_base64"),
                             output_bytes=_base64(body, "output_base64"), trusted_head=body.get("head"),
                             retired=retired, egress=egress)

    async def head(self) -> log.SignedHead:
        """The log's current head, signed now."""
        return await log.sign_head(self.db, self.signer)

    async def log_size(self) -> int | None:
        """The transparency log's tree size (every receipt issued); None when PostgreSQL does not
        answer within 2 s (a metrics scrape must not fail for it)."""
        try:
            return await asyncio.wait_for(log.size(self.db), 2.0)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """The hashes proving leaf `index` is in the tree of `tree_size` leaves (RFC 9162)."""
        try:
            return await log.inclusion_proof(self.db, index, tree_size)
        except log.ProofUnavailable as exc:
            raise RequestInvalid(str(exc)) from None

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The hashes proving the tree of `new_size` leaves extends the one of `old_size` (RFC 9162)."""
        try:
            return await log.consistency_proof(self.db, old_size, new_size)
        except log.ProofUnavailable as exc:
            raise RequestInvalid(str(exc)) from None

    async def _published_kids(self) -> set[str]:
        return {k.kid for k in await receipt_sql.published_keys(self.db, include_retired=True)}


def _attestation(body: Any) -> tuple[str, bytes, nacl.signing.VerifyKey, dict[str, Any]]:
    if not isinstance(body, dict) or set(body) != _ATTESTATION_FIELDS:
        raise RequestInvalid("send {keyid, sig (base64), public_key (a JWK)}",
                             errors=[{"pointer": "", "detail": "fields: keyid, sig, public_key"}])
    keyid = body["keyid"]
    if not isinstance(keyid, str) or not 0 < len(keyid) <= 200:
        raise RequestInvalid("keyid must be a string of 1-200 characters",
                             errors=[{"pointer": "/keyid", "detail": "string"}])
    sig = _base64(body, "sig")
    try:
        key = from_jwk(body["public_key"])
    except JwkError as exc:
        raise RequestInvalid(f"public_key: {exc}", errors=[{"pointer": "/public_key", "detail": str(exc)}]) from None
    return keyid, sig or b"", key, body["public_key"]


def _base64(body: dict[str, Any], name: str) -> bytes | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RequestInvalid(f"{name} is not base64", errors=[{"pointer": f"/{name}", "detail": "base64"}]) from None
