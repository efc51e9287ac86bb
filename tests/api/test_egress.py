"""Egress end to end (issue 21, docs/egress.md): an agent version declares an upstream, its task
(still network-less) calls it through its own socket to the gateway, the gateway injects the
secret the task never sees, every request is recorded, priced and bound into the receipt.

The "internet" is an HTTPS server on loopback with a throwaway CA that only the gateway trusts
(EXECUTOR_EGRESS_CA_FILE). The agents are Python on the example image images/egress-python.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import json
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import rfc8785
import trustme

from executor.embedded import EmbeddedPostgres, EmbeddedRedis
from runtimes.images import build_images
from tests.conftest import Api, ServiceProcess, make_service

pytestmark = pytest.mark.e2e

SECRET = "sk-live-" + uuid.uuid4().hex  # what the service stores; no task may ever see it
LIMITS = {"memory_mb": 128, "pids": 64, "timeout_s": 20}


class _Upstream(http.server.ThreadingHTTPServer):
    seen: list[dict[str, Any]]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Echoes what it was sent (never the Authorization value: only whether it was the secret);
    /sized?n= answers n bytes, /slow?s= answers after s seconds."""

    server: _Upstream

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        self.server.seen.append({"method": self.command, "path": self.path,
                                 "authorization": self.headers.get("Authorization"), "body": len(body)})
        if path.endswith("/slow"):
            time.sleep(float(params.get("s", "5")))
        if path.endswith("/sized"):
            answer = b"x" * int(params["n"])
        else:
            answer = json.dumps({"method": self.command, "path": self.path, "body_bytes": len(body),
                                 "authorized": self.headers.get("Authorization") == f"Bearer {SECRET}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[_Upstream, Path]]:
    """The loopback HTTPS upstream, and the file of the CA it was signed by."""
    ca = trustme.CA()
    folder = Path(tempfile.mkdtemp(prefix="egress-e2e-"))
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = _Upstream(("127.0.0.1", 0), _Handler)
    server.seen = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, ca_file
    server.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def egress_image(docker_client: docker.DockerClient) -> str:
    (image,) = [i for i in build_images(docker_client, ["egress-python"], progress=lambda line: None)
                if i.name == "egress-python"]
    return image.tag


@pytest.fixture(scope="module")
def egress_service(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, upstream: tuple[_Upstream, Path],
                   egress_image: str) -> Iterator[ServiceProcess]:
    socket_root = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))  # short: socket paths stay < 108 bytes
    svc = make_service(postgres, redis_server, "egress", redis_db="12", egress_allowed_hosts="localhost",
                       egress_ca_file=str(upstream[1]), egress_dir=str(socket_root), oci_runtimes="runc,runsc")
    svc.start()
    yield svc
    svc.stop()
    shutil.rmtree(socket_root, ignore_errors=True)


@pytest.fixture
async def eapi(egress_service: ServiceProcess) -> AsyncIterator[Api]:
    async with started_client(egress_service) as api:
        yield api


def started_client(svc: ServiceProcess) -> Any:
    import contextlib

    import aiohttp

    @contextlib.asynccontextmanager
    async def client() -> AsyncIterator[Api]:
        async with aiohttp.ClientSession() as session:
            yield Api(session, svc.base_url, svc.operator_token)
    return client()


def declared(port: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": "api", "url": f"https://localhost:{port}/v1", "methods": ["GET", "POST"],
             "inject": {"header": "Authorization", "secret": "api_key", "format": "Bearer {}"}, **extra}]


async def register(api: Api, image: str, port: int, *, command: list[str] | None = None,
                   egress_limits: dict[str, Any] | None = None, pricing: dict[str, Any] | None = None,
                   pool: dict[str, int] | None = None, runtime: str | None = None) -> str:
    body: dict[str, Any] = {
        "name": f"egress-{uuid.uuid4().hex[:10]}", "image": image, "command": command,
        "input_schema": {"type": "object"}, "output_schema": True,
        # gVisor's own threads count against the pids limit (docs/security.md)
        "limits": {**LIMITS, "pids": 256} if runtime == "runsc" else LIMITS,
        "egress": declared(port),
    }
    for key, value in (("egress_limits", egress_limits), ("pricing", pricing), ("pool", pool),
                       ("runtime", runtime)):
        if value is not None:
            body[key] = value
    status, agent, _ = await api.post("/v1/agents", json=body)
    assert status == 201, agent
    status, secret, _ = await api.request("PUT", f"/v1/agents/{agent['id']}/secrets/api_key", json={"value": SECRET})
    assert status == 201 and SECRET not in json.dumps(secret), secret
    return str(agent["id"])


def python(script: str) -> list[str]:
    return ["/usr/bin/python3", "-I", "-c", script]


# What a hostile task tries from inside, printed as one JSON document.
PROBE = r'''
import json, os, re, socket, sys
# The shape of the secret (the test's SECRET): a pattern, which unlike a literal needle does not
# match itself in this process's own memory.
SHAPE = re.compile(rb"sk-live-[0-9a-f]{32}")
given = sys.stdin.read()  # kept in memory: a decoy of the secret's shape shows the search works
found = []
def look(where, data):
    if SHAPE.search(data):
        found.append(where)
for key, value in os.environ.items():
    look("env:" + key, value.encode())
for pid in ("self", "1"):
    try:
        look("/proc/%s/environ" % pid, open("/proc/%s/environ" % pid, "rb").read())
    except OSError:
        pass
seen = 0
for top in ("/", ):
    for root, dirs, files in os.walk(top):
        if root.startswith(("/proc", "/sys", "/dev")):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(root, name)
            seen += 1
            try:
                if os.path.isfile(path) and os.path.getsize(path) < 2_000_000:
                    look(path, open(path, "rb").read())
            except OSError:
                pass
# Its own memory, every readable mapping.
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        addresses, perms = line.split()[:2]
        if not perms.startswith("r"):
            continue
        start, end = (int(x, 16) for x in addresses.split("-"))
        try:
            mem.seek(start)
            look("memory", mem.read(min(end - start, 64 * 1024 * 1024)))
        except (OSError, ValueError, OverflowError):
            pass
def ask(raw):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["EXECUTOR_EGRESS_SOCKET"])
    s.sendall(raw)
    answer = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
    look("answer", answer)
    line = answer.split(b"\r\n", 1)[0].decode()
    return int(line.split()[1]) if line.startswith("HTTP/") else line
port = int(os.environ["UPSTREAM_PORT"]) if "UPSTREAM_PORT" in os.environ else 0
tries = {
    "declared": b"GET /echo HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
    "undeclared_host": b"GET /echo HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n",
    "undeclared_method": b"DELETE /echo HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
    "outside_prefix": b"GET /../v2/echo HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
    "encoded_traversal": b"GET /%2e%2e/v2/echo HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
    "connect_tunnel": b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
    "absolute_other_host": b"GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
}
statuses = {name: ask(raw) for name, raw in tries.items()}
print(json.dumps({
    "found": found, "files_seen": seen, "statuses": statuses,
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "socket_dir": sorted(os.listdir("/run/executor/egress")),
    "run_executor": sorted(os.listdir("/run/executor")),
    "uid": os.getuid(),
}))
'''


async def run(api: Api, agent_id: str, input: Any, wait: float = 60) -> dict[str, Any]:
    """The final record, with its log under "log" when it did not complete (for the failure's message)."""
    status, record, _ = await api.post(f"/v1/executions?wait={wait}", json={"agent_id": agent_id, "input": input})
    assert status in (201, 202), record
    assert record["status"] not in ("PENDING", "RUNNING"), record
    if record["status"] != "COMPLETED":
        return {**record, "log": (await api.get_bytes(f"/v1/executions/{record['id']}/logs"))[-3000:]}
    return record


def digest_of(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The receipt's binding, computed here by an outside RFC 8785 implementation."""
    return {"sha256": hashlib.sha256(rfc8785.dumps(entries)).hexdigest(), "requests": len(entries),
            "bytes_out": sum(e["bytes_out"] for e in entries), "bytes_in": sum(e["bytes_in"] for e in entries)}


async def test_an_agent_calls_its_upstream_with_a_credential_it_never_sees(eapi: Api, egress_image: str,
                                                                         upstream: tuple[_Upstream, Path]) -> None:
    server, _ = upstream
    port = server.server_address[1]
    agent_id = await register(eapi, egress_image, port, pricing={"currency": "USD", "per_call": 2,
                                                                  "per_egress_request": 5})
    before = len(server.seen)
    record = await run(eapi, agent_id, {"upstream": "api", "method": "POST", "path": "/echo", "body": {"q": "hi"}})
    assert record["status"] == "COMPLETED", (record["error"], record.get("log"))
    assert record["output"]["status"] == 200
    assert record["output"]["body"] == {"method": "POST", "path": "/v1/echo", "body_bytes": 11, "authorized": True}
    assert server.seen[before:] == [{"method": "POST", "path": "/v1/echo", "authorization": f"Bearer {SECRET}",
                                     "body": 11}]
    assert record["cost"]["amount"] == 2 + 5  # one call, one egress request
    assert SECRET not in json.dumps(record)

    # The list, shown to the owner, is what the record's digest and the receipt bind.
    status, egress, _ = await eapi.get(f"/v1/executions/{record['id']}/egress")
    assert status == 200, egress
    (entry,) = egress["data"]
    assert (entry["method"], entry["upstream"], entry["status"], entry["outcome"]) == ("POST", "api", 200, "forwarded")
    assert entry["bytes_out"] == 11 and entry["bytes_in"] > 0
    assert SECRET not in json.dumps(egress)
    assert egress["digest"] == record["egress"] == digest_of(egress["data"])

    status, bundle, _ = await eapi.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 200, bundle
    statement = json.loads(base64.b64decode(bundle["envelope"]["payload"]))
    assert statement["egress"] == digest_of(egress["data"])
    verifier = eapi.as_token(None)
    status, report, _ = await verifier.post("/v1/receipts/verify", json={"receipt": bundle, "egress": egress["data"]})
    assert status == 200 and report["valid"] is True, report
    edited = [dict(entry, status=500)]
    status, report, _ = await verifier.post("/v1/receipts/verify", json={"receipt": bundle, "egress": edited})
    assert status == 200 and report["valid"] is False, report
    status, report, _ = await verifier.post("/v1/receipts/verify", json={"receipt": bundle, "egress": []})
    assert report["valid"] is False, report


@pytest.mark.parametrize("runtime", ["runc", "runsc"])
async def test_a_hostile_task_finds_no_secret_and_no_other_way_out(eapi: Api, egress_image: str,
                                                                  upstream: tuple[_Upstream, Path],
                                                                  runtime: str) -> None:
    server, _ = upstream
    port = server.server_address[1]
    agent_id = await register(eapi, egress_image, port, command=python(PROBE),
                              egress_limits={"requests": 50}, runtime=runtime)
    record = await run(eapi, agent_id, {})
    assert record["status"] == "COMPLETED", (record["error"], record.get("log"))
    assert record["oci_runtime"] == runtime
    probe = record["output"]
    assert probe["found"] == [], probe  # not in its environment, its files, its memory, nor any answer
    assert probe["files_seen"] > 100  # it did look
    assert probe["interfaces"] == ["lo"]
    assert probe["socket_dir"] == ["egress.sock"]  # its own socket, nothing else: no other task's
    assert probe["run_executor"] == ["egress"]
    assert probe["uid"] == 65534
    statuses = probe["statuses"]
    assert statuses["declared"] == 200
    # The same search does find a value of that shape when the task holds one (its input).
    decoy = await run(eapi, agent_id, {"decoy": "sk-live-" + uuid.uuid4().hex})
    assert "memory" in decoy["output"]["found"], decoy["output"]
    for name in ("undeclared_host", "undeclared_method", "outside_prefix", "encoded_traversal",
                 "connect_tunnel", "absolute_other_host"):
        assert isinstance(statuses[name], int) and 400 <= statuses[name] < 500, (name, statuses)

    status, egress, _ = await eapi.get(f"/v1/executions/{record['id']}/egress")
    assert status == 200, egress
    outcomes = [(e["method"], e["outcome"]) for e in egress["data"]]
    assert outcomes[0] == ("GET", "forwarded") and all(o == "refused" for _, o in outcomes[1:]), outcomes
    assert len(outcomes) == 7


async def test_an_agent_without_egress_has_no_socket(eapi: Api, egress_image: str) -> None:
    body = {"name": f"sealed-{uuid.uuid4().hex[:10]}", "image": egress_image, "limits": LIMITS,
            "command": python("import json, os; print(json.dumps({'run': os.path.exists('/run/executor'),"
                              " 'env': sorted(k for k in os.environ if k.startswith('EXECUTOR_'))}))"),
            "input_schema": {"type": "object"}, "output_schema": True}
    status, agent, _ = await eapi.post("/v1/agents", json=body)
    assert status == 201 and agent["egress"] is None, agent
    record = await run(eapi, agent["id"], {})
    assert record["status"] == "COMPLETED", (record["error"], record.get("log"))
    assert record["output"] == {"run": False, "env": []}
    assert record["egress"] is None


@pytest.mark.parametrize(("limits", "script", "error"), [
    ({"requests": 2}, "for _ in range(5): ask('/echo')", "egress_requests_exceeded"),
    ({"bytes_in": 10_000}, "ask('/sized?n=200000')", "egress_bytes_exceeded"),
    ({"bytes_out": 1000}, "ask('/echo', b'x' * 50_000)", "egress_bytes_exceeded"),
    ({"time_s": 1}, "ask('/slow?s=8')", "egress_time_exceeded"),
])
async def test_each_cap_ends_the_task_with_its_own_error(eapi: Api, egress_image: str,
                                                        upstream: tuple[_Upstream, Path], limits: dict[str, Any],
                                                        script: str, error: str) -> None:
    server, _ = upstream
    helper = (
        "import http.client, os, socket, sys, time\n"
        # Its input first, as an agent does: a pre-started container runs this before any task
        # claims it, and requests on its socket before the claim are refused 503, unrecorded.
        "sys.stdin.read()\n"
        "class C(http.client.HTTPConnection):\n"
        "    def connect(self):\n"
        "        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(os.environ['EXECUTOR_EGRESS_SOCKET'])\n"
        "def ask(path, body=None):\n"
        "    c = C('api', timeout=30)\n"
        "    c.request('POST' if body else 'GET', path, body=body)\n"
        "    return c.getresponse().read()\n"
        f"{script}\n"
        "time.sleep(15)\n"  # only a cap ends it before its wall clock
        "print('{}')\n"
    )
    agent_id = await register(eapi, egress_image, server.server_address[1], command=python(helper),
                              egress_limits=limits, pricing={"currency": "USD", "per_call": 3})
    record = await run(eapi, agent_id, {})
    assert record["status"] == "FAILED" and record["error"]["type"] == error, (record["error"], record.get("log"))
    assert record["cost"]["amount"] == 3  # the agent's doing: charged
    status, egress, _ = await eapi.get(f"/v1/executions/{record['id']}/egress")
    assert status == 200 and egress["digest"] == record["egress"] == digest_of(egress["data"])


async def test_pre_started_containers_serve_egress_agents(eapi: Api, egress_image: str,
                                                         upstream: tuple[_Upstream, Path]) -> None:
    """A pre-started container got its socket at creation, bound to no task; the claim binds it."""
    server, _ = upstream
    agent_id = await register(eapi, egress_image, server.server_address[1], pool={"min": 2, "max": 4})
    records = []
    for _ in range(6):
        records.append(await run(eapi, agent_id, {"upstream": "api", "path": "/echo"}))
        await asyncio.sleep(0.5)  # room for the pool to refill
    assert all(r["status"] == "COMPLETED" and r["output"]["body"]["authorized"] for r in records), records
    assert any(r["pooled"] for r in records), [r["pooled"] for r in records]
    for record in records:
        status, egress, _ = await eapi.get(f"/v1/executions/{record['id']}/egress")
        assert status == 200
        assert [e["outcome"] for e in egress["data"]] == ["forwarded"], egress  # each its own, none mixed


async def test_egress_is_refused_for_hosts_the_operator_does_not_allow(eapi: Api, egress_image: str) -> None:
    body = {"name": f"nope-{uuid.uuid4().hex[:10]}", "image": egress_image, "input_schema": {"type": "object"},
            "output_schema": True, "egress": [{"name": "api", "url": "https://example.com/v1"}]}
    status, problem, headers = await eapi.post("/v1/agents", json=body)
    assert status == 422 and headers["Content-Type"].startswith("application/problem+json"), problem
    assert any(e["pointer"].startswith("/egress/0/url") for e in problem.get("errors", [])), problem
