"""An execution as a task for the runtime, for both kinds of agent, and the task's end read back.

Everything that depends on an agent's kind lives here, once: a container agent runs its own
command; a WASM agent runs wasmtime in its baked image (runtimes/wasm.py) with a fuel budget,
a cap on its linear memory and a backstop timeout, and wasmtime's exit says how it ended. The
worker builds a task with `build_task`, reads its end with `interpret`, and prices its fuel
with `fuel_budget`, and never asks which kind an agent is.
"""

from __future__ import annotations

from executor.egress.policy import EgressPolicy, task_environment
from executor.egress.sockets import EgressGrant
from executor.records.agents import AgentVersion
from executor.records.executions import ExecutionRecord, encode_input
from executor.settings import Limits, Settings
from runtimes import wasm
from runtimes.base import EGRESS_SOCKET, TaskLimits, TaskResult, TaskSpec
from runtimes.pool import MAX_IDLE_AGE_S


def task_limits(limits: Limits) -> TaskLimits:
    """An execution's limits as the runtime enforces them."""
    return TaskLimits(memory_mb=limits.memory_mb, cpus=limits.cpus, pids=limits.pids, timeout_s=limits.timeout_s)


def fuel_budget(agent: AgentVersion, settings: Settings) -> int | None:
    """A WASM agent's fuel budget per run; None for container agents."""
    if agent.kind != "wasm":
        return None
    return agent.fuel or settings.wasm_default_fuel


def command(agent: AgentVersion, limits: Limits, settings: Settings) -> list[str] | None:
    """The container's command: the agent's own (None: its image's), or wasmtime's arguments."""
    if agent.kind != "wasm":
        return agent.command
    # wasmtime's timeout counts from its own start, which for a pre-started container is before
    # the claim: it is only a backstop. The task's wall clock is the orchestrator's, from the
    # claim, as for every task.
    return wasm.run_arguments(fuel=fuel_budget(agent, settings) or settings.wasm_default_fuel,
                              timeout_s=limits.timeout_s + MAX_IDLE_AGE_S + 5,
                              max_memory_bytes=wasm.memory_cap_bytes(limits.memory_mb))


def build_task(agent: AgentVersion, record: ExecutionRecord, stdin: bytes | None, settings: Settings) -> TaskSpec:
    """The task that runs `record` with `agent`: `stdin` is its input as stored (None: encoded
    from the record's input)."""
    assert agent.image_digest is not None  # submission refuses a version without its image
    grant: EgressGrant | None = None
    environment: tuple[tuple[str, str], ...] = ()
    if agent.egress is not None:  # its own socket to the egress gateway, and where to find it
        policy = EgressPolicy.from_dict(agent.egress)
        grant = EgressGrant(agent.agent_id, policy)
        environment = tuple(sorted(task_environment(policy, EGRESS_SOCKET).items()))
    return TaskSpec(
        execution_id=str(record.id),
        image=agent.image_digest,
        command=command(agent, record.limits, settings),
        stdin=stdin if stdin is not None else encode_input(record.input),
        limits=task_limits(record.limits),
        max_output_bytes=settings.max_output_bytes,
        max_log_bytes=settings.max_log_bytes,
        tmpfs_mb=settings.tmpfs_mb,
        oci_runtime=agent.runtime or settings.oci_runtime,  # the version's, else the default
        pool_min=(agent.pool or {}).get("min", settings.pool_default_min),
        pool_max=(agent.pool or {}).get("max", settings.pool_default_max),
        pool_owner=f"{agent.agent_id}:{agent.version}",
        egress=grant,
        environment=environment,
    )


def interpret(agent: AgentVersion, result: TaskResult) -> TaskResult:
    """A task's end as its kind says it: for a WASM agent, wasmtime's exit code and last words
    tell a trap, spent fuel or a memory cap from an ordinary exit."""
    return wasm.classify(result) if agent.kind == "wasm" else result
