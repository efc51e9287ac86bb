"""The client commands' HTTP: the standard library only (the server package does not depend on
the SDK under clients/), a bearer token, problems (RFC 9457) turned into one line and an exit
code, and lists followed across their pages (`next_cursor`)."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from executor import __version__
from executor.cli.exits import CommandError, Exit

DEFAULT_PORT = 8080  # executor.settings.Settings.port; not read from there: client commands load no settings
PROBLEM_PREFIX = "urn:executor:problem:"
MAX_PAGE = 100  # the API's largest `limit`


def default_url() -> str:
    """EXECUTOR_URL, else this host on EXECUTOR_PORT (when it is a port number) or 8080."""
    url = os.environ.get("EXECUTOR_URL")
    if url:
        return url
    port = os.environ.get("EXECUTOR_PORT", "")
    return f"http://127.0.0.1:{port if port.isdigit() else DEFAULT_PORT}"


class Api:
    """One service, one token. Every call answers the decoded JSON body (None for 204), or
    raises CommandError with the exit code of its failure."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CommandError(f"--url {base_url!r} is not an http(s) URL", "usage", Exit.USAGE)
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
             raw: bool = False, timeout: float | None = None, token_needed: bool = True) -> Any:
        if token_needed and not self.token:
            raise CommandError("no token: set EXECUTOR_TOKEN or pass --token", "unauthenticated",
                               Exit.NOT_AUTHORIZED)
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json, application/problem+json;q=0.9, */*;q=0.1",
                   "User-Agent": f"executor-cli/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        what = f"{method} {path}"
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                content = response.read()
                if raw:
                    return content
                if response.status == 204 or not content:
                    return None
                return json.loads(content)
        except urllib.error.HTTPError as error:
            raise _problem(what, error) from None
        except urllib.error.URLError as error:
            raise CommandError(f"cannot reach {self.base_url}: {_reason(error.reason)}", "service_unreachable",
                               Exit.UNREACHABLE) from None
        except (TimeoutError, ConnectionError, OSError) as error:
            raise CommandError(f"cannot reach {self.base_url}: {_reason(error)}", "service_unreachable",
                               Exit.UNREACHABLE) from None
        except ValueError as error:
            raise CommandError(f"{what}: the answer is not JSON ({error})", "bad_response") from None

    def items(self, path: str, *, query: dict[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        """Every item of a list, page after page (`next_cursor`), or the first `limit` of them."""
        found: list[Any] = []
        cursor: str | None = None
        while limit is None or len(found) < limit:
            size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(found))
            page = self.call("GET", path, query={**(query or {}), "limit": size, "cursor": cursor})
            found.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found


def quote(segment: str) -> str:
    """One path segment, escaped (an id typed by hand may hold anything)."""
    return urllib.parse.quote(segment, safe="")


def _reason(reason: object) -> str:
    if isinstance(reason, socket.gaierror):
        return f"the name does not resolve ({reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timed out"
    return str(reason)


def _problem(what: str, error: urllib.error.HTTPError) -> CommandError:
    """An error answer as one line: its problem's detail (and violations), slug and exit code."""
    status = error.code
    code = {401: Exit.NOT_AUTHORIZED, 403: Exit.NOT_AUTHORIZED, 404: Exit.NOT_FOUND}.get(status, Exit.FAILED)
    try:
        problem = json.loads(error.read())
    except (ValueError, OSError):
        problem = None
    if not isinstance(problem, dict) or not str(problem.get("type", "")).startswith(PROBLEM_PREFIX):
        return CommandError(f"{what}: HTTP {status} {error.reason}", f"http_{status}", code)
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    violations = [f"{v.get('pointer', '')}: {v.get('detail', '')}" for v in problem.get("errors") or []
                  if isinstance(v, dict)]
    if violations:
        detail += " [" + "; ".join(violations[:5]) + (f"; {len(violations) - 5} more" if len(violations) > 5 else "")
        detail += "]"
    return CommandError(f"{what}: {detail}", str(problem["type"]).removeprefix(PROBLEM_PREFIX), code)
