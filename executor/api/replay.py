"""Idempotency-Key on every creating POST the contract marks `idempotent` (docs/idempotency.md),
but POST /v1/executions and its batch, which bind their keys to the execution themselves.

Runs inside validation.py's middleware: the operation is known, the caller allowed, the key's
form and the body already checked; a request the contract refuses claims no key. The answer is
kept only when it is a success (2xx); it is replayed byte for byte, with its headers, plus
`Idempotent-Replayed: true`. A body is never logged here (a token's answer holds its secret)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from executor.api.auth import PRINCIPAL_KEY
from executor.api.bodies import read_json
from executor.api.keys import REPLAYS
from executor.api.problems import Handler
from executor.api.validation import OPERATION_KEY
from executor.replays import Answer, Claim

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"

# Operations with an idempotency of their own (executions/service.py, executions/batch.py).
OWN_IDEMPOTENCY = frozenset({("POST", "/v1/executions"), ("POST", "/v1/executions/batch")})

# Headers of an answer that are not kept: aiohttp writes them for each answer.
_NOT_KEPT = frozenset({"content-length", "date", "server", "transfer-encoding", "connection", REPLAYED.lower()})


def answer_to_keep(response: web.StreamResponse) -> Answer | None:
    """What a replay would answer, when `response` is a success with its body in hand; else None."""
    if not 200 <= response.status < 300 or not isinstance(response, web.Response):
        return None
    body = response.body
    if body is None:
        body = b""
    if not isinstance(body, bytes | bytearray):  # a streamed payload: not replayable
        return None
    headers = {name: value for name, value in response.headers.items() if name.lower() not in _NOT_KEPT}
    return Answer(response.status, headers, bytes(body))


def replayed(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers={**answer.headers, REPLAYED: "true"})


@web.middleware
async def replay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    op, caller = request.get(OPERATION_KEY), request.get(PRINCIPAL_KEY)
    key = request.headers.get(IDEMPOTENCY_KEY)
    if op is None or not op.idempotent or key is None or caller is None or (op.method, op.path) in OWN_IDEMPOTENCY:
        return await handler(request)
    body = await read_json(request) if op.body is not None and op.body_media == "application/json" \
        and request.body_exists else None
    replays = request.app[REPLAYS]
    outcome = await replays.claim(caller.party, key, request.method, request.path_qs, body)
    if isinstance(outcome, Answer):
        return replayed(outcome)
    return await _run_claimed(request, handler, outcome)


async def _run_claimed(request: web.Request, handler: Handler, claim: Claim) -> web.StreamResponse:
    replays = request.app[REPLAYS]
    try:
        response = await handler(request)
    except BaseException:
        # A problem (4xx/5xx) or a cancelled request: a retry with the key runs it again.
        await asyncio.shield(replays.release(claim))
        raise
    answer = answer_to_keep(response)
    if answer is None:
        await asyncio.shield(replays.release(claim))
    else:
        await asyncio.shield(replays.complete(claim, answer))
    return response
