"""The exit codes of the `executor` command, and the one error it reports (docs/cli.md).

Every failure ends as one line on stderr, `executor: <what> (<slug>)`, and one of these codes;
the slug is the API's problem slug when the service answered with one (docs/errors.md), else
one of the command line's own (`service_unreachable`, `dependency_unavailable`, …)."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1  # the operation failed: a 4xx/409/5xx problem not below, an execution that did not
    #             complete (`wait`), a receipt that does not verify, an image that does not build
    USAGE = 2  # bad arguments (argparse) or bad settings for a server command
    UNREACHABLE = 3  # the service did not answer (refused, timeout, DNS); for a server command, a
    #                  dependency (PostgreSQL, the Docker engine) did not answer
    NOT_AUTHORIZED = 4  # 401 or 403 (no token, a bad token, a role that may not)
    NOT_FOUND = 5  # 404


# For `executor --help` and docs/cli.md.
EXIT_CODES = """exit codes:
  0  ok
  1  the operation failed (a refused request, an execution that did not complete,
     a receipt that does not verify, an image that does not build)
  2  usage: bad arguments, or bad settings for a server command
  3  unreachable: the service (client commands) or PostgreSQL/Redis/the engine
     (server commands) did not answer
  4  not authorized: no token, a bad token, or a role that may not (401/403)
  5  not found (404)"""


class CommandError(Exception):
    """A failure to report as one line and an exit code."""

    def __init__(self, message: str, slug: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.slug = slug
        self.code = code

    def line(self) -> str:
        return f"executor: {self.message} ({self.slug})"
