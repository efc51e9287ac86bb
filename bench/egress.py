"""Latency of an agent with egress next to the same agent without it, measured in one run.

    .venv/bin/python bench/egress.py [-n 40]

It starts its own PostgreSQL and Redis, an HTTPS upstream on loopback (a throwaway CA that only
the gateway trusts), and two `executor serve` processes allowed egress to it: one with the pool
of pre-started containers, one without. In each it registers, on the example image
images/egress-python (Python):

  sealed    no egress: reads its input, answers it (no socket, no network)
  egress    ask.py: one GET through its socket to the gateway, which injects a secret and calls
            the upstream over TLS, then answers what the upstream said

and runs them interleaved, pooled and cold. The reference for the gateway's cost is the same
request made directly from this process to the upstream (a fresh TLS connection each, as the
gateway's first request of a task makes one), measured in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import docker
import trustme

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.latency import percentile, start_service  # noqa: E402
from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from runtimes.images import build_images  # noqa: E402

LIMITS = {"memory_mb": 128, "cpus": 1.0, "pids": 64, "timeout_s": 10}
SEALED = ["/usr/bin/python3", "-I", "-c",
          "import json, sys; json.dump({'status': 200, 'body': json.load(sys.stdin)}, sys.stdout)"]


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "authorized": bool(self.headers.get("Authorization"))}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_upstream(ca: trustme.CA) -> tuple[ThreadingHTTPServer, ssl.SSLContext]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server, client_context


def call(base_url: str, token: str, method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def register(base_url: str, token: str, image: str, port: int, *, egress: bool) -> str:
    body: dict[str, Any] = {"name": f"bench-{'egress' if egress else 'sealed'}-{secrets.token_hex(3)}",
                            "image": image, "command": None if egress else SEALED, "limits": LIMITS,
                            "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}
    if egress:
        body["egress"] = [{"name": "api", "url": f"https://localhost:{port}/v1", "methods": ["GET"],
                           "inject": {"header": "Authorization", "secret": "key", "format": "Bearer {}"}}]
    agent_id = str(call(base_url, token, "POST", "/v1/agents", body)["id"])
    if egress:
        call(base_url, token, "PUT", f"/v1/agents/{agent_id}/secrets/key", {"value": "sk-bench"})
    return agent_id


async def sequential(base_url: str, token: str, agent_id: str, n: int) -> list[float]:
    body = {"agent_id": agent_id, "input": {"upstream": "api", "path": "/echo"}}
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.post(base_url + "/v1/executions?wait=30", json=body, headers=headers) as answer:
                record = await answer.json()
            out.append(time.perf_counter() - t0)
            assert record["status"] == "COMPLETED" and record["output"]["status"] == 200, record
    return out


def direct(port: int, context: ssl.SSLContext) -> float:
    """The same GET made from here, on a fresh TLS connection."""
    t0 = time.perf_counter()
    request = urllib.request.Request(f"https://localhost:{port}/v1/echo", headers={"Authorization": "Bearer x"})
    with urllib.request.urlopen(request, context=context) as response:
        response.read()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=40, help="sequential runs per path")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="executor-bench-egress-"))
    workdir.chmod(0o755)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    upstream, client_context = start_upstream(ca)
    port = upstream.server_address[1]
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    client = docker.from_env()
    image = next(i for i in build_images(client, ["egress-python"], progress=lambda line: None)
             if i.name == "egress-python").tag
    token = "exe_bench_" + secrets.token_urlsafe(16)
    socket_root = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    processes = []
    samples: dict[str, list[float]] = {"direct": []}
    try:
        postgres.start()
        redis_url = redis_server.start()
        agents: dict[str, tuple[str, str]] = {}
        for index, pool in enumerate((True, False)):
            mode = "pooled" if pool else "cold"
            process, base_url = start_service(
                postgres.create_database(f"bench_egress_{index}"), redis_url.rsplit("/", 1)[0] + f"/{index}",
                workdir / f"service-{index}", token, pool,
                {"EXECUTOR_EGRESS_ALLOWED_HOSTS": "localhost", "EXECUTOR_EGRESS_CA_FILE": str(workdir / "ca.pem"),
                 "EXECUTOR_EGRESS_DIR": str(socket_root / str(index))})
            processes.append(process)
            for egress in (False, True):
                name = f"{'egress' if egress else 'sealed'} {mode}"
                agents[name] = (base_url, register(base_url, token, image, port, egress=egress))
                samples[name] = []
        for base_url, agent_id in agents.values():  # warm up
            asyncio.run(sequential(base_url, token, agent_id, 3))
        for _ in range(args.n // 10 or 1):  # interleaved rounds
            for name, (base_url, agent_id) in agents.items():
                samples[name] += asyncio.run(sequential(base_url, token, agent_id, 10))
            samples["direct"] += [direct(port, client_context) for _ in range(10)]
    finally:
        for process in processes:
            process.terminate()
            process.wait(60)
        upstream.shutdown()
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(socket_root, ignore_errors=True)

    median = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print(f"\negress latency: {len(samples['direct'])} sequential runs per path, Python agent on "
          "images/egress-python, interleaved\n")
    print("| path | p50 ms | p95 ms | p50 - sealed p50 (same pool mode) |")
    print("|---|---|---|---|")
    for name, values in samples.items():
        ms = [v * 1000 for v in values]
        base = median.get("sealed " + name.split()[-1]) if name != "direct" else None
        extra = f"{median[name] - base:+.1f}" if base is not None and name.startswith("egress") else ""
        label = "direct GET from the bench (fresh TLS), reference" if name == "direct" else f"api, {name}"
        print(f"| {label} | {statistics.median(ms):.1f} | {percentile(ms, 95):.1f} | {extra} |")


if __name__ == "__main__":
    main()
