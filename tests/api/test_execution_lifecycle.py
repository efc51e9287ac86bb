"""Executions end to end through HTTP, on the real engine, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from datetime import datetime

import docker

from tests.conftest import listed_containers, wait_until_running

# Each probe prints one JSON document about the sandbox it runs in.
HARDENING_PROBE = r"""
ifaces=$(awk -F: 'NR>2 {gsub(/ /, "", $1); printf "%s%s", sep, $1; sep=","}' /proc/net/dev)
if (touch /rootfs-probe) 2>/dev/null; then rootfs_writable=true; else rootfs_writable=false; fi
status() { v=$(awk -v k="$1:" '$1 == k {print $2}' /proc/self/status); echo "${v:-null}"; }
tmp_options=$(awk '$2 == "/tmp" {print $4}' /proc/mounts)
set -- $(stat -f -c '%b %S' /tmp)
tmp_kb=$(( $1 * $2 / 1024 ))
cp /bin/busybox /tmp/bb && chmod +x /tmp/bb
if /tmp/bb true 2>/dev/null; then tmp_exec=true; else tmp_exec=false; fi
writable=""
while read -r _ mp _; do
  if [ -d "$mp" ] && touch "$mp/.probe-$$" 2>/dev/null; then
    rm -f "$mp/.probe-$$"; writable="$writable${writable:+,}$mp"
  fi
done < /proc/mounts
printf '{"interfaces":"%s","rootfs_writable":%s,"uid":%s,"gid":%s,"cap_eff":"%s","no_new_privs":%s,'\
'"seccomp":%s,"tmp_options":"%s","tmp_kb":%s,"tmp_exec":%s,"writable_mounts":"%s"}' \
  "$ifaces" "$rootfs_writable" "$(id -u)" "$(id -g)" "$(status CapEff)" "$(status NoNewPrivs)" "$(status Seccomp)" \
  "$tmp_options" "$tmp_kb" "$tmp_exec" "$writable"
"""


def assert_hardened(probe: dict, *, gvisor: bool = False) -> None:
    """What the hardening probe must report. Under gVisor the guest sees gVisor's kernel: no
    NoNewPrivs line, Seccomp 0 (the filter is on the Sentry), fewer tmpfs options listed."""
    assert probe["interfaces"] == "lo"
    assert probe["rootfs_writable"] is False
    assert probe["uid"] != 0 and probe["gid"] != 0
    assert probe["cap_eff"] == "0000000000000000"
    assert "noexec" in probe["tmp_options"].split(",") and probe["tmp_exec"] is False
    assert 0 < probe["tmp_kb"] <= 16 * 1024
    # A file could be made in no mount but the capped /tmp: no /dev/shm, no /dev/mqueue.
    assert probe["writable_mounts"] == "/tmp", probe["writable_mounts"]
    if not gvisor:
        assert probe["no_new_privs"] == 1
        assert probe["seccomp"] == 2  # a filter is on
        assert {"nosuid", "nodev"} <= set(probe["tmp_options"].split(","))


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_task_completes_with_validated_output(api, images) -> None:
    status, _agents, _ = await api.get("/v1/agents")
    assert status == 200
    agent_id = await api.register(
        None, image=images["wordcount"],
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        output_schema={"type": "object", "required": ["words", "lines", "chars"]},
    )
    record = await api.run(agent_id, {"text": "hello wide\nworld"})
    assert record["status"] == "COMPLETED", record
    assert record["output"] == {"words": 3, "lines": 1, "chars": 16}
    assert record["error"] is None

    status, fetched, _ = await api.get(f"/v1/executions/{record['id']}")
    assert status == 200
    assert fetched["status"] == "COMPLETED" and fetched["exit_code"] == 0
    started, finished = _time(fetched["started_at"]), _time(fetched["finished_at"])
    assert _time(fetched["created_at"]) <= started <= finished
    assert fetched["usage"]["wall_ms"] >= 0
    assert abs((finished - started).total_seconds() * 1000 - fetched["usage"]["wall_ms"]) < 1000


async def test_without_wait_answers_202_with_location(api) -> None:
    agent_id = await api.register(["cat"])
    status, record, headers = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"x": 1}})
    assert status == 202 and record["status"] in ("PENDING", "RUNNING", "COMPLETED")
    assert headers["Location"] == f"/v1/executions/{record['id']}"
    status, final, _ = await api.get(headers["Location"] + "?wait=30")
    assert status == 200 and final["status"] == "COMPLETED" and final["output"] == {"x": 1}


async def test_hardening_inside_the_task(api) -> None:
    agent_id = await api.register(["sh", "-c", HARDENING_PROBE])
    record = await api.run(agent_id)
    assert record["status"] == "COMPLETED", record
    assert_hardened(record["output"])


async def test_memory_bomb_fails_memory_limit_exceeded(api) -> None:
    agent_id = await api.register(["sh", "-c", "tail /dev/zero"], limits={"memory_mb": 32, "timeout_s": 30})
    record = await api.run(agent_id, wait=40)
    assert record["status"] == "FAILED", record
    assert record["error"]["type"] == "memory_limit_exceeded"


async def test_endless_loop_times_out_within_its_limit(api) -> None:
    agent_id = await api.register(["sh", "-c", "while :; do :; done"], limits={"timeout_s": 2})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    record = await api.run(agent_id, wait=30)
    elapsed = loop.time() - t0
    assert record["status"] == "TIMEOUT" and record["error"]["type"] == "timeout", record
    assert elapsed < 2 + 2, f"took {elapsed:.1f} s for a 2 s limit"
    assert (_time(record["finished_at"]) - _time(record["started_at"])).total_seconds() < 2 + 2


async def test_fork_bomb_is_contained_and_the_service_keeps_answering(api, images) -> None:
    bomb = await api.register(["sh", "-c", "f() { f | f & }; f; sleep 60"], limits={"pids": 16, "timeout_s": 4})
    status, started, _ = await api.post("/v1/executions", json={"agent_id": bomb, "input": {}})
    assert status == 202
    await asyncio.sleep(1)
    status, _, _ = await api.get("/healthz")
    assert status == 200
    counter = await api.register(None, image=images["wordcount"])
    record = await api.run(counter, {"text": "still here"})
    assert record["status"] == "COMPLETED" and record["output"]["words"] == 2
    status, final, _ = await api.get(f"/v1/executions/{started['id']}?wait=30")
    assert final["status"] in ("TIMEOUT", "FAILED"), final


async def test_output_flood_is_cut_at_the_cap(api) -> None:
    agent_id = await api.register(["sh", "-c", "yes"], limits={"timeout_s": 30})
    record = await api.run(agent_id, wait=40)
    assert record["status"] == "FAILED" and record["error"]["type"] == "output_too_large", record
    status, raw, _ = await api.get(f"/v1/executions/{record['id']}/stdout")
    assert status == 200 and len(raw) == 1024 * 1024 and raw.startswith(b"y\ny\n")
    status, _, _ = await api.get("/healthz")
    assert status == 200


async def test_log_flood_is_cut_at_the_cap(api) -> None:
    agent_id = await api.register(["sh", "-c", "yes >&2"], limits={"timeout_s": 30})
    record = await api.run(agent_id, wait=40)
    assert record["status"] == "FAILED" and record["error"]["type"] == "output_too_large", record
    status, log, _ = await api.get(f"/v1/executions/{record['id']}/logs")
    assert status == 200 and len(log) == 256 * 1024


async def test_nonzero_exit_keeps_the_log(api) -> None:
    agent_id = await api.register(["sh", "-c", "echo 'something broke' >&2; exit 3"])
    record = await api.run(agent_id)
    assert record["status"] == "FAILED" and record["error"]["type"] == "nonzero_exit", record
    assert record["exit_code"] == 3
    status, log, headers = await api.get(f"/v1/executions/{record['id']}/logs")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert log == b"something broke\n"


async def test_output_that_is_not_json_or_violates_the_schema(api) -> None:
    not_json = await api.register(["sh", "-c", "echo not json"])
    record = await api.run(not_json)
    assert record["status"] == "FAILED" and record["error"]["type"] == "output_invalid", record
    status, raw, _ = await api.get(f"/v1/executions/{record['id']}/stdout")
    assert status == 200 and raw == b"not json\n"

    wrong_shape = await api.register(
        ["sh", "-c", "echo '{\"n\": \"seven\"}'"],
        output_schema={"type": "object", "properties": {"n": {"type": "integer"}, "m": {"type": "string"}},
                       "required": ["n", "m"]},
    )
    record = await api.run(wrong_shape)
    assert record["status"] == "FAILED" and record["error"]["type"] == "output_invalid"
    pointers = sorted(v["pointer"] for v in record["error"]["violations"])
    assert pointers == ["", "/n"]  # "m" is missing (at the root) and "n" has the wrong type
    assert record["output"] is None


async def test_cancel_a_running_task_removes_its_container(api, docker_client: docker.DockerClient) -> None:
    agent_id = await api.register(["sleep", "60"], limits={"timeout_s": 120})
    status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
    execution_label = await wait_until_running(docker_client, record["id"])
    status, cancelled, _ = await api.post(f"/v1/executions/{record['id']}/cancel")
    assert status == 200 and cancelled["status"] == "CANCELLED", cancelled
    assert cancelled["error"]["type"] == "cancelled"
    assert listed_containers(docker_client, label=execution_label) == []
    # A final state is final: cancelling again changes nothing.
    status, again, _ = await api.post(f"/v1/executions/{record['id']}/cancel")
    assert status == 200 and again["status"] == "CANCELLED"


async def test_cancel_a_pending_execution(api, service) -> None:
    agent_id = await api.register(["cat"])
    # Submit and cancel at once: whether the worker got to it first or not, it ends in one final state.
    status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
    status, cancelled, _ = await api.post(f"/v1/executions/{record['id']}/cancel")
    assert status == 200 and cancelled["status"] in ("CANCELLED", "COMPLETED")


async def test_list_own_executions_paginated_and_filtered(user_api, api) -> None:
    agent_id = await api.register(["cat"])
    other_agent = await api.register(["sh", "-c", "exit 1"])
    for agent in (agent_id, other_agent):
        await api.grant(user_api.subject, agent)
    ids = [(await user_api.run(agent_id, {"i": i}))["id"] for i in range(3)]
    failed = await user_api.run(other_agent)
    status, page, _ = await user_api.get("/v1/executions?limit=2")
    assert status == 200 and len(page["items"]) == 2 and page["next_cursor"]
    assert page["items"][0]["id"] == failed["id"]  # newest first
    status, rest, _ = await user_api.get(f"/v1/executions?limit=2&cursor={page['next_cursor']}")
    seen = [r["id"] for r in page["items"] + rest["items"]]
    assert seen == [failed["id"], *reversed(ids)][: len(seen)] and len(seen) == 4
    status, completed, _ = await user_api.get(f"/v1/executions?status=COMPLETED&agent_id={agent_id}")
    assert sorted(r["id"] for r in completed["items"]) == sorted(ids)
    status, only_failed, _ = await user_api.get("/v1/executions?status=FAILED")
    assert [r["id"] for r in only_failed["items"]] == [failed["id"]]
