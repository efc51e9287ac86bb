"""The hardening and hostile-agent checks with gVisor as the OCI runtime (EXECUTOR_OCI_RUNTIME=runsc).

Inside gVisor the guest talks to gVisor's own kernel (the Sentry), which runs
under runsc's seccomp filter on the host, so some answers differ from runc:
/proc/self/status shows `Seccomp: 0` and no `NoNewPrivs` line, and /proc/mounts
lists fewer tmpfs options. gVisor's own threads count against the container's pids limit, so agents under
runsc need a higher one (256 here; 64 starves a shell script). What must hold holds: only `lo`, a read-only root,
no root user, no capabilities, nothing executable from /tmp, and every hostile
agent ends in its error type while the service keeps answering.
"""

from __future__ import annotations

from tests.api.test_execution_lifecycle import HARDENING_PROBE, assert_hardened
from tests.api.test_wasm_agents import assert_wasm_endings, register_wasm, upload
from tests.images.test_wasm_runtime import ECHO_WAT

GVISOR = {"pids": 256}


async def test_hardening_under_gvisor(runsc_api) -> None:
    agent_id = await runsc_api.register(["sh", "-c", HARDENING_PROBE], limits=GVISOR)
    record = await runsc_api.run(agent_id)
    assert record["status"] == "COMPLETED", record
    assert_hardened(record["output"], gvisor=True)


# (command, limits, the (status, error type) it may end with)
HOSTILE_CASES = [
    (["sh", "-c", "tail /dev/zero"], {**GVISOR, "memory_mb": 64, "timeout_s": 30},
     {("FAILED", "memory_limit_exceeded")}),
    (["sh", "-c", "while :; do :; done"], {**GVISOR, "timeout_s": 2}, {("TIMEOUT", "timeout")}),
    (["sh", "-c", "yes"], {**GVISOR, "timeout_s": 30}, {("FAILED", "output_too_large")}),
    (["sh", "-c", "echo broken >&2; exit 3"], GVISOR, {("FAILED", "nonzero_exit")}),
    (["sh", "-c", "f() { f | f & }; f; sleep 60"], {**GVISOR, "timeout_s": 4},
     {("TIMEOUT", "timeout"), ("FAILED", "nonzero_exit")}),
]


async def test_hostile_agents_under_gvisor(runsc_api, images) -> None:
    for command, limits, expected in HOSTILE_CASES:
        agent_id = await runsc_api.register(command, limits=limits)
        record = await runsc_api.run(agent_id, wait=40)
        outcome = (record["status"], (record["error"] or {}).get("type"))
        assert outcome in expected, (command, record)
        status, _, _ = await runsc_api.get("/healthz")
        assert status == 200
    counter = await runsc_api.register(None, image=images["wordcount"], limits=GVISOR)
    record = await runsc_api.run(counter, {"text": "still here"})
    assert record["status"] == "COMPLETED" and record["output"]["words"] == 2


async def test_cancel_under_gvisor(runsc_api, runsc_service, docker_client) -> None:
    from tests.conftest import listed_containers, wait_until_running

    agent_id = await runsc_api.register(["sleep", "60"], limits={**GVISOR, "timeout_s": 120})
    status, record, _ = await runsc_api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
    assert status == 202, record
    label = await wait_until_running(docker_client, record["id"], timeout=20)
    status, cancelled, _ = await runsc_api.post(f"/v1/executions/{record['id']}/cancel")
    assert status == 200 and cancelled["status"] == "CANCELLED", cancelled
    assert listed_containers(docker_client, label=label) == []
    assert cancelled["error"]["type"] == "cancelled"


async def test_wasm_agents_under_gvisor(runsc_api) -> None:
    """gVisor offers the guest fewer CPU features than the host (no AVX-VNNI here): a module
    compiled for the host's own features is refused by wasmtime there, so the service compiles
    for a stated baseline. Fuel, timeout, memory and traps end as they do under runc."""
    agent_id = await register_wasm(runsc_api, limits=GVISOR)
    status, agent = await upload(runsc_api, agent_id, ECHO_WAT)
    assert status == 200, agent
    record = await runsc_api.run(agent_id, {"msg": "under gvisor"}, wait=40)
    log = (await runsc_api.get(f"/v1/executions/{record['id']}/logs"))[1]
    assert record["status"] == "COMPLETED", (record["error"], log)
    assert record["output"] == {"msg": "under gvisor"} and record["oci_runtime"] == "runsc"
    await assert_wasm_endings(runsc_api, limits=GVISOR)
