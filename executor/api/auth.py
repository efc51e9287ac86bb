"""Bearer-token authentication; the token itself is never logged."""

from __future__ import annotations

from aiohttp import web

from executor.api.contract import openapi
from executor.api.keys import TOKENS
from executor.api.problems import Handler
from executor.errors import Forbidden, Unauthenticated
from executor.observability import timing
from executor.records.principals import Principal, Role

# The keys, the log and verification hold only public keys and hashes: anyone holding a
# receipt must be able to check it without an account (docs/receipts.md).
# The contract says which (an operation with no roles), and so does the document it publishes.
PUBLIC_PATHS = frozenset(op.path for op in openapi.operations() if op.roles is None)
# The console's static files (contract/console.py) are public: a name that is not one of them is
# answered `not_found` to anyone, never `unauthenticated`.
PUBLIC_PREFIXES = ("/console/",)
PRINCIPAL_KEY = "principal"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in PUBLIC_PATHS and not request.path.startswith(PUBLIC_PREFIXES):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <token>")
        token = token.strip()
        # Tokens are printable ASCII; a header of other bytes (aiohttp keeps undecodable ones as
        # surrogates) is a wrong token, not a reason to fail while hashing it.
        if not (token.isascii() and token.isprintable()):
            raise Unauthenticated("the token is not valid")
        principal = await request.app[TOKENS].authenticate(token)
        if principal is None:
            raise Unauthenticated("the token is not valid")
        request[PRINCIPAL_KEY] = principal
        timing.mark("authenticated")
    return await handler(request)


def principal(request: web.Request, *allowed: Role) -> Principal:
    """The caller, checked against the roles allowed here (all roles when none are given)."""
    caller: Principal = request[PRINCIPAL_KEY]
    if allowed and caller.role not in allowed:
        raise Forbidden(f"this needs the role {' or '.join(r.value for r in allowed)}; "
                        f"the token has {caller.role.value}")
    return caller
