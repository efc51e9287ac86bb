"""HTTP routes for receipts, the signing keys and the transparency log (the keys, the
log and verification are public: see auth.PUBLIC_PATHS)."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, query_int, read_json
from executor.api.keys import RECEIPTS
from executor.receipts.service import Receipts
from executor.records.principals import Role

routes = web.RouteTableDef()


def _receipts(request: web.Request) -> Receipts:
    return request.app[RECEIPTS]


@routes.get("/v1/executions/{id}/receipt")
async def get_receipt(request: web.Request) -> web.Response:
    size = query_int(request, "tree_size", minimum=1) if "tree_size" in request.query else None
    bundle = await _receipts(request).bundle(principal(request), request.match_info["id"], tree_size=size)
    return json_response(bundle)


@routes.post("/v1/executions/{id}/receipt/attestations")
async def attest(request: web.Request) -> web.Response:
    caller = principal(request, Role.SERVICE, Role.OPERATOR)
    bundle = await _receipts(request).attest(caller, request.match_info["id"], await read_json(request))
    return json_response(bundle, status=201)


@routes.get("/v1/keys")
async def keys(request: web.Request) -> web.Response:
    return json_response(await _receipts(request).key_set(), headers={"Cache-Control": "max-age=60"})


@routes.get("/v1/log/head")
async def head(request: web.Request) -> web.Response:
    signed = await _receipts(request).head()
    return json_response(signed.to_json())


@routes.get("/v1/log/proof/inclusion")
async def inclusion(request: web.Request) -> web.Response:
    index, size = query_int(request, "index"), query_int(request, "size", minimum=1)
    hashes = await _receipts(request).inclusion_proof(index, size)
    return json_response({"log_index": index, "tree_size": size, "hashes": [h.hex() for h in hashes]})


@routes.get("/v1/log/proof/consistency")
async def consistency(request: web.Request) -> web.Response:
    old, new = query_int(request, "from", minimum=1), query_int(request, "to", minimum=1)
    hashes = await _receipts(request).consistency_proof(old, new)
    return json_response({"from": old, "to": new, "hashes": [h.hex() for h in hashes]})


@routes.post("/v1/receipts/verify")
async def verify(request: web.Request) -> web.Response:
    report = await _receipts(request).verify(await read_json(request))
    return json_response(report.to_dict())
