"""Ask an upstream through executor's egress gateway and answer with what it said.

The task has no network: its only way out is the Unix socket at $EXECUTOR_EGRESS_SOCKET,
to which it speaks plain HTTP; the gateway adds the credential the agent's service stored
(the task never sees it) and talks TLS to the upstream itself. $EXECUTOR_EGRESS_URL_<NAME>
is the base URL of each declared upstream, e.g. http://models for the upstream "models".

Input:  {"upstream": "models", "method": "POST", "path": "/v1/echo", "body": {...}}
Output: {"status": 200, "body": <the upstream's JSON answer, or its text>}
Progress lines go to stderr, which the owner can follow live (GET /v1/executions/{id}/events).
"""

import http.client
import json
import os
import socket
import sys
import urllib.parse


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket: the host part of the URL is only the Host header."""

    def __init__(self, host: str, socket_path: str, timeout: float = 30.0) -> None:
        super().__init__(host, timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def main() -> None:
    request = json.load(sys.stdin)
    name = request.get("upstream", "api")
    base = os.environ["EXECUTOR_EGRESS_URL_" + name.upper().replace("-", "_")]
    url = urllib.parse.urlsplit(base + request.get("path", "/"))
    body = request.get("body")
    data = json.dumps(body).encode() if body is not None else None
    print(f"asking {name}: {request.get('method', 'GET')} {url.path}", file=sys.stderr, flush=True)
    connection = UnixHTTPConnection(url.netloc, os.environ["EXECUTOR_EGRESS_SOCKET"])
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = {"Content-Type": "application/json"} if data is not None else {}
    connection.request(request.get("method", "GET"), target, body=data, headers=headers)
    response = connection.getresponse()
    text = response.read().decode("utf-8", "replace")
    print(f"{name} answered {response.status}", file=sys.stderr, flush=True)
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text
    json.dump({"status": response.status, "body": answer}, sys.stdout)


if __name__ == "__main__":
    main()
