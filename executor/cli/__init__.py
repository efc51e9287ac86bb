"""The `executor` command (docs/cli.md): server commands that run the service on this host, and
client commands that talk to a running one over HTTP.

    app.py        the parser and the dispatch: failures as one line and an exit code
    exits.py      the exit codes and CommandError
    parsing.py    client and server commands: their options, how each kind starts
    http.py       the client commands' HTTP (stdlib), problems and pages
    output.py     tables, records, JSON, progress
    server.py     up, serve, api, worker, migrate
    status.py, executions.py, agents.py (and versions), entitlements.py, tokens.py,
    deliveries.py, images.py, receipts.py (keys, receipts verify, log audit)
"""

from executor.cli.app import main

__all__ = ["main"]
