"""Schemathesis hooks for tests/api/test_contract_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Three jobs:

- Aim path parameters at real objects some of the time. A random `{id}` is nearly always a 404;
  the fuzz service is seeded with an agent (and a WASM one, for module uploads), a final execution,
  an entitlement and a spare token,
  whose ids arrive in FUZZ_SEEDS (JSON), and each generated set of path parameters is kept or
  replaced by the seeded one for that route.
- Keep DELETE /v1/images/{ref} off the engine's other images. The engine is shared with the rest
  of the test session and resolves short hex strings as image id prefixes, so a fuzzed `ref` such
  as `a1` could remove an unrelated image. Every `ref` but the seeded, pinned one (answered with
  409, nothing removed) is sent under `executor/fuzz-absent/`, a repository no one has: the route
  is still fuzzed (parsing, 404, problem shape) and the 409 path is hit by the seeded ref.
- Keep the run's own operator token: DELETE /v1/tokens/{id} of its id revokes the spare one instead.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote

import schemathesis
from hypothesis import strategies as st

# A module upload's body is bytes (the document says `contentMediaType: application/wasm`).
schemathesis.serializer.alias("application/wasm", "application/octet-stream")

SEEDS: dict[str, str] = json.loads(os.environ.get("FUZZ_SEEDS", "{}"))
SAFE_IMAGE_PREFIX = "executor/fuzz-absent/"

# Path prefix → the seeded id its `{id}` can be.
_ID_OF = (
    ("/v1/executions/", "execution_id"),
    ("/v1/agents/", "agent_id"),
    ("/v1/entitlements/", "entitlement_id"),
    ("/v1/tokens/", "token_id"),
)


def _seeded(path: str) -> dict[str, Any] | None:
    if "{" not in path:
        return None
    if path.endswith("/module") and "wasm_agent_id" in SEEDS:  # a module goes to a WASM agent only
        return {"id": SEEDS["wasm_agent_id"], "version": 1} if "{version}" in path else {"id": SEEDS["wasm_agent_id"]}
    for prefix, key in _ID_OF:
        if path.startswith(prefix) and key in SEEDS:
            found: dict[str, Any] = {"id": SEEDS[key]}
            if "{version}" in path:
                found["version"] = 1
            return found
    if path.startswith("/v1/images/") and "image_ref" in SEEDS:
        return {"ref": SEEDS["image_ref"]}
    return None


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    seeded = _seeded(context.operation.path) if context.operation is not None else None
    if not seeded or not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, **seeded}])


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() != "DELETE":
        return
    if case.operation.path == "/v1/tokens/{id}":
        # The stateful phase follows GET /v1/tokens to DELETE: never revoke the token the run uses.
        if unquote(str((case.path_parameters or {}).get("id", ""))) == SEEDS.get("own_token_id"):
            case.path_parameters = {**case.path_parameters, "id": SEEDS["token_id"]}
        return
    if case.operation.path != "/v1/images/{ref}":
        return
    # Path parameters arrive here percent-encoded (`executor%2Fbusybox%3Alatest`).
    ref = str((case.path_parameters or {}).get("ref", ""))
    seeded = SEEDS.get("image_ref")
    safe = seeded if seeded and unquote(ref) == seeded else f"{SAFE_IMAGE_PREFIX}{ref}"
    case.path_parameters = {**(case.path_parameters or {}), "ref": safe}
