"""The operator console: one static page and its assets, served by the service (docs/console.md).

Public like /docs: the page has no powers of its own. It asks for a bearer token, keeps it in
the tab's sessionStorage, and calls this API with it like any client."""

from __future__ import annotations

from executor.api.contract.operation import Operation, Reply

TAG = "console"
PAGE = "index.html"

# The files under executor/api/console/ the service serves: name -> (media type, operationId).
# These and no other: any other name under /console/ is `not_found`.
ASSETS: dict[str, tuple[str, str]] = {
    "console.js": ("text/javascript", "getConsoleScript"),
    "verify.js": ("text/javascript", "getConsoleVerifier"),
    "console.css": ("text/css", "getConsoleStyle"),
}

OPERATIONS = (
    Operation("GET", "/console", "getConsole", "The operator console (a page)", TAG, None,
              replies=(Reply(200, "The page: sign in with a bearer token, kept in the tab's sessionStorage.",
                             {"type": "string"}, media="text/html"),),
              description="Static, with a strict Content-Security-Policy: scripts and styles from this origin "
                          "only, calls to this API only, no framing (docs/console.md)."),
    *(Operation("GET", f"/console/{name}", operation_id, f"The console's {name}", TAG, None,
                replies=(Reply(200, f"The file {name}, as shipped with the package.", {"type": "string"},
                               media=media),))
      for name, (media, operation_id) in ASSETS.items()),
)
