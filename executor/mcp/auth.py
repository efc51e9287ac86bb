"""Who calls the MCP endpoint: the API's bearer tokens, checked by the SDK's bearer middleware.

A request without a live token is answered 401 with `WWW-Authenticate: Bearer error=…,
resource_metadata="<base>/.well-known/oauth-protected-resource/mcp"` (the MCP authorization
spec, RFC 9728); that document names this resource and says tokens go in the header. It
names no authorization server: tokens are issued by the marketplace (POST /v1/tokens), not
through OAuth.

A session belongs to the principal ("role:subject") whose token opened it: the SDK's session
manager answers 404 to a request for it with a token of anyone else (another token of the same
principal is the same caller), and Sessions.bind refuses it again inside the handlers.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from starlette.requests import Request
from starlette.responses import JSONResponse

from executor.records.principals import Principal, Role
from executor.tokens import Tokens

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"


class TokenVerifier:
    """The SDK's TokenVerifier over executor's tokens: the principal rides in the token's claims."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = await self.tokens.authenticate(token)
        if principal is None:
            return None
        # client_id and subject are what the session manager compares: the principal, not the token.
        return AccessToken(token=token, client_id=principal.party, subject=principal.party, scopes=[],
                           claims={"role": principal.role.value, "sub": principal.subject,
                                   "granted": list(principal.granted) if principal.granted is not None else None})


def principal_of(ctx: ServerRequestContext[Any, Any]) -> Principal:
    """The principal of the HTTP request that carried this MCP request (the bearer middleware let
    only authenticated requests through)."""
    request = ctx.request
    user = request.scope.get("user") if isinstance(request, Request) else None
    if not isinstance(user, AuthenticatedUser):
        raise PermissionError("an MCP request reached a handler without an authenticated token")
    claims = user.access_token.claims or {}
    granted = claims.get("granted")
    return Principal(Role(claims["role"]), str(claims["sub"]), tuple(granted) if granted is not None else None)


def session_id_of(ctx: ServerRequestContext[Any, Any]) -> str | None:
    request = ctx.request
    return request.headers.get("mcp-session-id") if isinstance(request, Request) else None


def resource_url(base_url: str) -> str:
    return base_url.rstrip("/") + MCP_PATH


def metadata_url(base_url: str) -> str:
    """RFC 9728's well-known location for the resource at MCP_PATH."""
    return base_url.rstrip("/") + METADATA_PATH + MCP_PATH


def protected_resource_metadata(base_url: str) -> JSONResponse:
    return JSONResponse({
        "resource": resource_url(base_url),
        "bearer_methods_supported": ["header"],
        "resource_name": "executor: marketplace agents as MCP tools",
        "resource_documentation": "docs/mcp.md",
    }, headers={"Cache-Control": "max-age=3600"})
