"""Each task's own CPU time and peak memory, on the real engine: ContainerRuntime.run
driven directly, cold and pooled, with both meters, under runc and gVisor.

The bounds are on resources, never on timing. The stats meter's workloads keep a quiet
tail: the engine answers its stats API about once a second per container, and a
sample must land after the work for that meter to see it (it loses the tail).
"""

from __future__ import annotations

import asyncio
import glob
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import docker
import pytest

from runtimes.base import TaskLimits, TaskResult, TaskSpec, Termination
from runtimes.container import ContainerRuntime
from runtimes.engine import DockerEngine
from runtimes.launcher import ContainerLauncher
from runtimes.live import RunningTasks
from runtimes.metering import CgroupMeter, Meter, StatsMeter, cgroup_name
from runtimes.pool import ContainerPool
from runtimes.pool_shelves import PoolConfig
from tests.conftest import new_instance_id

MiB = 2**20
LIMIT_MB = 256
# busybox awk: sprintf builds the 100 MiB string, and copying it into `s` doubles it (~203 MiB).
ALLOC = "awk 'BEGIN{s=sprintf(\"%104857600s\",\"\"); print length(s)}'"
ALLOC_AND_HOLD = "awk 'BEGIN{s=sprintf(\"%104857600s\",\"\"); system(\"sleep 1.5\"); print length(s)}'"
# 1 s of CPU: RLIMIT_CPU ends the loop after 1 s of CPU time, not of wall time, so a busy
# machine (2 cores here, shared with other suites) makes it slower, never cheaper.
BUSY = "(ulimit -t 1; while :; do :; done) 2>/dev/null; :"
TAIL = "; sleep 1.5"  # for the stats meter: a sample lands after the work
# A pre-started container's life before its claim: burn CPU (~0.3 s, then ~0.7 s in awk: about
# 1 s in all, measured) and peak at ~200 MiB, then wait for the input. Well within the pool's
# warm-up budget (it closes a shelf only past 2 s of CPU unclaimed, and after 4 busy samples in
# a row, half a second apart). timeout's kill is reported on stderr, which an unclaimed
# container must keep silent: dropped. (Never a bare `sh -c "timeout …"`: sh would exec it as
# PID 1, which ignores timeout's SIGTERM.)
BEFORE_CLAIM = ("timeout 0.2 sh -c 'while :; do :; done' 2>/dev/null; "
                "awk 'BEGIN{s=sprintf(\"%104857600s\",\"\"); exit}'; "
                "cat >/dev/null; sleep 1.5; echo '{}'")

WORKLOADS = {  # name: (command for the cgroup meter, command for the stats meter)
    "alloc": (ALLOC, ALLOC_AND_HOLD),
    "busy": (BUSY, BUSY + TAIL),
    "sleep": ("sleep 1", "sleep 1.5"),
}

# Every test here drives the real engine, some without asking for a fixture.
pytestmark = pytest.mark.e2e


@pytest.fixture
async def engine() -> Any:
    engine = DockerEngine(threads=8)
    yield engine
    await engine.aclose()


@pytest.fixture(scope="module")
def busybox(images: dict[str, str], docker_client: docker.DockerClient) -> str:
    return docker_client.images.get(images["busybox"]).id


def make_spec(image: str, script: str, *, oci_runtime: str | None = None) -> TaskSpec:
    return TaskSpec(execution_id=f"meter-{uuid.uuid4().hex[:8]}", image=image, command=["sh", "-c", script],
                    stdin=b"{}", limits=TaskLimits(memory_mb=LIMIT_MB, cpus=1.0, pids=64, timeout_s=30.0),
                    max_output_bytes=1 << 20, max_log_bytes=1 << 20, tmpfs_mb=16, oci_runtime=oci_runtime)


def cgroup_dirs(instance_id: str) -> list[str]:
    """Every directory of the instance left under any hierarchy (v1) or the v2 tree."""
    name = cgroup_name(instance_id)
    return glob.glob(f"/sys/fs/cgroup/*/executor/{name}") + glob.glob(f"/sys/fs/cgroup/executor/{name}")


def slot_dirs(instance_id: str) -> list[str]:
    return [path for d in cgroup_dirs(instance_id) for path in glob.glob(f"{d}/*/")]


@pytest.fixture
async def runtime_with(engine: DockerEngine) -> Any:
    """A ContainerRuntime per meter, each with an instance id of its own, and with a pool when
    asked (`pool_config`); afterwards every container and every cgroup directory of it must be gone."""
    made: list[tuple[ContainerRuntime, ContainerPool | None]] = []

    def make(meter: Meter, pool_config: PoolConfig | None = None) -> ContainerRuntime:
        launcher = ContainerLauncher(engine, instance_id=new_instance_id("meter"), meter=meter)
        running = RunningTasks()
        pool = ContainerPool(launcher, pool_config, running=running) if pool_config else None
        runtime = ContainerRuntime(launcher, claimer=pool, running=running)
        if pool:
            pool.start()
        made.append((runtime, pool))
        return runtime

    yield make
    for runtime, pool in made:
        if pool:
            await pool.close()
        # Each removal released its container's slot: the sweep finds none left over,
        # and takes the instance's own directory.
        launcher = runtime.launcher
        assert await launcher.drain() == 0
        assert not slot_dirs(launcher.instance_id) and not cgroup_dirs(launcher.instance_id)
        assert not await launcher.remove_orphans(set())


def meters() -> list[Any]:
    return [pytest.param(CgroupMeter, id="cgroup"), pytest.param(StatsMeter, id="stats")]


def report(what: str, result: TaskResult) -> None:
    usage = result.usage
    cpu = f"{usage.cpu_ns / 1e9:.3f} s" if usage.cpu_ns is not None else "None"
    peak = f"{usage.peak_memory_bytes / MiB:.1f} MiB" if usage.peak_memory_bytes is not None else "None"
    print(f"[metering] {what}: method={usage.method} cpu={cpu} peak={peak} runtime={result.oci_runtime}"
          f" pooled={result.pooled}")


async def run(runtime: ContainerRuntime, spec: TaskSpec) -> TaskResult:
    result = await runtime.run(spec, asyncio.Event())
    assert result.termination is Termination.EXITED, result
    return result


@pytest.mark.parametrize("meter_class", meters())
async def test_peak_memory_of_a_task(runtime_with: Callable[[Meter], ContainerRuntime], busybox: str,
                                     meter_class: type[Meter], docker_client: docker.DockerClient) -> None:
    meter = meter_class()
    runtime = runtime_with(meter)
    script = WORKLOADS["alloc"][meter_class is StatsMeter]
    result = await run(runtime, make_spec(busybox, script))
    report(f"alloc 100 MiB, {meter.method}", result)
    assert result.exit_code == 0 and result.stdout.strip() == b"104857600"
    assert result.usage.method == meter.method
    assert 100 * MiB <= (result.usage.peak_memory_bytes or 0) < LIMIT_MB * MiB, result
    assert result.oci_runtime == docker_client.info()["DefaultRuntime"]


@pytest.mark.parametrize("meter_class", meters())
async def test_cpu_time_of_a_busy_loop_and_of_a_sleep(runtime_with: Callable[[Meter], ContainerRuntime],
                                                      busybox: str, meter_class: type[Meter]) -> None:
    meter = meter_class()
    runtime = runtime_with(meter)
    stats = meter_class is StatsMeter
    busy = await run(runtime, make_spec(busybox, WORKLOADS["busy"][stats]))
    sleep = await run(runtime, make_spec(busybox, WORKLOADS["sleep"][stats]))
    report(f"busy 1 s, {meter.method}", busy)
    report(f"sleep, {meter.method}", sleep)
    assert busy.usage.cpu_ns is not None and 0.8e9 <= busy.usage.cpu_ns <= 1.3e9, busy
    assert sleep.usage.cpu_ns is not None and sleep.usage.cpu_ns < 0.1e9, sleep
    assert busy.usage.method == sleep.usage.method == meter.method


@pytest.mark.parametrize("meter_class", meters())
async def test_a_pooled_container_is_metered_from_its_claim(
        runtime_with: Callable[[Meter, PoolConfig], ContainerRuntime], busybox: str, meter_class: type[Meter]) -> None:
    meter = meter_class()
    runtime = runtime_with(meter, PoolConfig(max_containers=2, max_memory_mb=4 * LIMIT_MB))
    pool = runtime.claimer
    assert isinstance(pool, ContainerPool)
    spec = make_spec(busybox, BEFORE_CLAIM)
    cold = await run(runtime, spec)  # creates the shelf; the pool starts one for it
    # Woken by the pool itself when the container is on the shelf; at once, with its reason, when
    # the pool closes the shelf. The bound is only for a pool that neither starts one nor gives
    # up: generous, as a failed start is retried after a 30 s pause (an engine hiccup under load).
    try:
        await asyncio.wait_for(pool.wait_until_ready(spec), timeout=120)
    except TimeoutError:
        raise AssertionError(f"no pre-started container after 120 s: {pool.describe(spec)}") from None
    await asyncio.sleep(2.5)  # let it finish its burn and its peak, unclaimed
    warm = await run(runtime, replace(spec, execution_id=f"meter-{uuid.uuid4().hex[:8]}"))
    report(f"before-claim work, cold, {meter.method}", cold)
    report(f"before-claim work, pooled, {meter.method}", warm)
    assert not cold.pooled and warm.pooled
    # Cold: the burn and the peak happen in the task's own container, so they are the task's.
    assert (cold.usage.cpu_ns or 0) >= 0.4e9 and (cold.usage.peak_memory_bytes or 0) >= 100 * MiB, cold
    # Pooled: they happened in the pool, before the claim, so they are nobody's.
    assert warm.usage.cpu_ns is not None and warm.usage.cpu_ns < 0.1e9, warm
    assert warm.usage.peak_memory_bytes is not None and warm.usage.peak_memory_bytes < 50 * MiB, warm
    assert warm.usage.method == meter.method


async def test_gvisor_tasks_are_metered(runtime_with: Callable[[Meter], ContainerRuntime], busybox: str,
                                        docker_client: docker.DockerClient) -> None:
    assert "runsc" in docker_client.info().get("Runtimes", {}), "runsc is not registered with the engine"
    runtime = runtime_with(CgroupMeter())
    result = await run(runtime, make_spec(busybox, f"{ALLOC}; {BUSY}", oci_runtime="runsc"))
    report("alloc 100 MiB then busy 1 s, cgroup, runsc", result)
    assert result.oci_runtime == "runsc" and result.usage.method == "cgroup"
    assert (result.usage.cpu_ns or 0) > 0 and (result.usage.peak_memory_bytes or 0) > 0, result


class _BrokenMeter(CgroupMeter):
    async def begin(self, engine: Any, live: Any) -> Any:
        raise OSError("no cgroup for you")


async def test_a_metering_failure_never_fails_the_task(runtime_with: Callable[[Meter], ContainerRuntime],
                                                       busybox: str) -> None:
    runtime = runtime_with(_BrokenMeter())
    result = await run(runtime, make_spec(busybox, "cat; echo"))
    assert result.exit_code == 0 and result.stdout == b"{}\n"
    assert result.usage.method is None and result.usage.cpu_ns is None and result.usage.peak_memory_bytes is None


@pytest.mark.parametrize("oci_runtime", ["runc", "runsc"])
async def test_oom_kills_are_read_from_the_tasks_cgroup(runtime_with: Callable[[Meter], ContainerRuntime],
                                                        busybox: str, oci_runtime: str) -> None:
    """The kernel's kill at the limit is counted in the task's cgroup (runtimes/oom.py), under
    runc and gVisor; a task that exits 137 by itself is not an OOM, and under runc one that
    survives its OOM-killed child and exits 0 succeeds (the kill is still counted)."""
    runtime = runtime_with(CgroupMeter())
    limits = TaskLimits(memory_mb=16, cpus=1.0, pids=256, timeout_s=30.0)
    bomb = replace(make_spec(busybox, "tail /dev/zero", oci_runtime=oci_runtime), limits=limits)
    result = await runtime.run(bomb, asyncio.Event())
    assert result.termination is Termination.OOM and (result.usage.oom_kills or 0) >= 1, result
    # The parent enforces the limit; the engine's own is a backstop 4 MiB above it. The kernel
    # force-charges what the dying victim still allocates, so the peak may pass the limit by a
    # few pages (seen: one, under runsc), never by anything near the backstop.
    assert (result.usage.peak_memory_bytes or 0) <= 16 * MiB + 256 * 1024, result
    # Exit code 137 says nothing by itself (PID 1 cannot SIGKILL itself: it exits so).
    lookalike = replace(make_spec(busybox, "exit 137", oci_runtime=oci_runtime), limits=limits)
    result = await runtime.run(lookalike, asyncio.Event())
    assert result.termination is Termination.EXITED and result.exit_code == 137, result
    assert result.usage.oom_kills == 0, result
    survivor = replace(make_spec(busybox, "tail /dev/zero; echo '{}'", oci_runtime=oci_runtime), limits=limits)
    result = await runtime.run(survivor, asyncio.Event())
    assert (result.usage.oom_kills or 0) >= 1, result
    if oci_runtime == "runsc":  # the host kernel's kill takes gVisor's Sentry: the whole sandbox goes
        assert result.termination is Termination.OOM and result.exit_code == 137, result
    else:
        assert result.termination is Termination.EXITED and result.exit_code == 0, result
