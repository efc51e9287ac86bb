"""Receipts, the signing keys and the transparency log. The keys, the log and verification are
public: anyone holding a receipt can check it without an account (docs/receipts.md)."""

from __future__ import annotations

from executor.api.contract.components import BASE64, ref
from executor.api.contract.operation import ANY_ROLE, OPERATOR, SERVICE, Operation, Param, Reply, Schema

TAG = "receipts"
BUNDLE = ref("ReceiptBundle")

# What the handlers read with bodies.query_int: ASCII digits, at most 18 of them.
_MAX_QUERY_INT = 10**18 - 1


def _count(minimum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": _MAX_QUERY_INT}


SCHEMAS: dict[str, Schema] = {
    "Attestation": {
        "type": "object", "additionalProperties": False, "required": ["keyid", "sig", "public_key"],
        "properties": {
            "keyid": {"type": "string", "minLength": 1, "maxLength": 200,
                      "description": "the witness's name for its key, 1-200 characters (not one of executor's)"},
            "sig": {**BASE64, "description": "base64 of the Ed25519 signature over the receipt envelope's DSSE "
                                             "PAE bytes"},
            "public_key": {**ref("PublicJwk"), "description": "the witness's Ed25519 public key as a JWK"},
        },
        "description": "A witness's countersignature of a receipt.",
    },
    "VerifyReceipt": {
        "type": "object", "additionalProperties": False, "required": ["receipt"],
        "properties": {
            "receipt": {"description": "a receipt bundle as GET /v1/executions/{id}/receipt answers it; anything "
                                       "else is reported as not valid, not refused"},
            "input_base64": {"anyOf": [BASE64, {"type": "null"}],
                             "description": "the input bytes (GET /v1/executions/{id}/input), base64: their sha256 "
                                            "must be the receipt's"},
            "output_base64": {"anyOf": [BASE64, {"type": "null"}],
                              "description": "the stdout bytes (GET /v1/executions/{id}/stdout), base64"},
            "head": {"description": "a signed tree head (GET /v1/log/head) kept from earlier: the receipt's log "
                                    "must agree with it"},
            "egress": {"anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "null"}],
                       "description": "the execution's egress list (`data` of GET /v1/executions/{id}/egress), "
                                      "as recorded: its RFC 8785 SHA-256 and totals must be the receipt's `egress`"},
        },
    },
}

_ATTESTATION_EXAMPLE = {
    "keyid": "marketplace-2026",
    "sig": "Q5aaTgBP3Q97RWqEp4G8NUdGByzdM5Gbz1DM0G6kaZUHo3YR/IhDW2lNWIrTGH+wLqu73pK3JomZvjoNarxGBw==",
    "public_key": {"kty": "OKP", "crv": "Ed25519", "x": "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"},
}

OPERATIONS = (
    Operation(
        "GET", "/v1/executions/{id}/receipt", "getReceipt", "The signed receipt of a final execution", TAG, ANY_ROLE,
        query=(Param("tree_size", _count(1), "Prove inclusion against the signed head of this size (one the "
                                             "verifier already holds) instead of the newest."),),
        replies=(Reply(200, "The receipt with its witnesses, its inclusion proof and the signed head it is "
                            "proved against.", BUNDLE),),
        problems=("receipt_unavailable",),
        description="`receipt_unavailable` while the execution is not final; `not_found` for a `tree_size` no "
                    "head was signed at; `request_invalid` for a head that predates the receipt.",
    ),
    Operation(
        "POST", "/v1/executions/{id}/receipt/attestations", "attestReceipt", "Countersign a receipt as a witness",
        TAG, (SERVICE, OPERATOR),
        body=ref("Attestation"), idempotent=True,
        replies=(Reply(201, "Kept (again: the same attestation twice is one); the receipt with every signature.",
                       BUNDLE),),
        problems=("attestation_invalid", "conflict", "receipt_unavailable"),
        description="The signature must hold over the receipt's DSSE PAE bytes, by a key that is not one of "
                    "executor's. `conflict`: this keyid already attested with another signature. As for GET "
                    "/v1/executions/{id}/receipt: an execution the caller may not see is `not_found`, and one "
                    "that is not final yet `receipt_unavailable`.",
        examples={"a marketplace's countersignature": _ATTESTATION_EXAMPLE},
    ),
    Operation(
        "GET", "/v1/keys", "getKeys", "The public keys receipts and log heads are signed with", TAG, None,
        replies=(Reply(200, "A JWK set of the published, unretired keys (cacheable for 60 s).", ref("KeySet")),),
    ),
    Operation(
        "GET", "/v1/log/head", "getLogHead", "The transparency log's current head, signed now", TAG, None,
        replies=(Reply(200, "A DSSE envelope of the tree head statement.", ref("SignedLogHead")),),
    ),
    Operation(
        "GET", "/v1/log/proof/inclusion", "getInclusionProof", "Prove a leaf is in the log", TAG, None,
        query=(Param("index", _count(0), "The leaf (a receipt's log_index).", required=True),
               Param("size", _count(1), "The tree size (a signed head's tree_size).", required=True)),
        replies=(Reply(200, "The RFC 9162 audit path.", ref("InclusionProof")),),
        description="`request_invalid` when the leaf is not below the size, or the log has not reached it.",
    ),
    Operation(
        "GET", "/v1/log/proof/consistency", "getConsistencyProof", "Prove the log only grew between two sizes",
        TAG, None,
        query=(Param("from", _count(1), "The older tree size.", required=True),
               Param("to", _count(1), "The newer tree size, at least `from`.", required=True)),
        replies=(Reply(200, "The RFC 9162 consistency proof.", ref("ConsistencyProof")),),
        description="`request_invalid` when `from` exceeds `to`, or the log has not reached `to`.",
    ),
    Operation(
        "POST", "/v1/receipts/verify", "verifyReceipt", "Check a receipt bundle against this service's keys", TAG,
        None, body=ref("VerifyReceipt"),
        replies=(Reply(200, "Every check's outcome: `valid` is true when none failed. A receipt that does not hold "
                            "is a report, not an error.", ref("VerifyReport")),),
        description="The same checks as `executor receipts verify` (offline, with only public keys).",
        examples={"with the input": {"receipt": {"envelope": {}, "inclusion_proof": {}, "tree_head": {}},
                                     "input_base64": "eyJ0ZXh0IjoiaGVsbG8ifQ=="}},
    ),
)
