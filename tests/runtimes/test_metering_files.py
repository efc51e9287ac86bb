"""Unit tests of the meters' reading of cgroup files and stats samples, against fake
trees in tmp_path (pure logic; the real thing is tests/runtimes/test_metering.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from runtimes.metering import (
    CgroupMeter,
    StatsMeter,
    _StatsMetering,
    cgroup_name,
    choose_meter,
    parse_cpu_stat_usec,
    parse_stats,
)
from runtimes.oom import parse_oom_kills

PARENT = "/executor/inst/slot"


def v1_tree(root: Path, *, cpu_dir: str = "cpu,cpuacct", links: bool = True) -> Path:
    """A v1 layout: cpu and cpuacct on one mount (with the usual links), memory, pids, a named one."""
    for name in (cpu_dir, "memory", "pids", "systemd"):
        (root / name / PARENT.lstrip("/")).mkdir(parents=True)
    if links:
        for name in cpu_dir.split(","):
            (root / name).symlink_to(cpu_dir)
    (root / cpu_dir / PARENT.lstrip("/") / "cpuacct.usage").write_text("1000000\n")
    (root / "memory" / PARENT.lstrip("/") / "memory.max_usage_in_bytes").write_text("4194304\n")
    return root


def v2_tree(root: Path, *, peak: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    slot = root / PARENT.lstrip("/")
    slot.mkdir(parents=True)
    (slot / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n")
    if peak:
        (slot / "memory.peak").write_text("8388608\n")
    return root


def live(pooled: bool = False, idle_cpu_ns: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(id="c" * 64, cgroup_parent=PARENT, pooled=pooled, idle_cpu_ns=idle_cpu_ns)


def test_cgroup_names_are_valid_and_distinct() -> None:
    assert cgroup_name("host-1_a") == "host-1_a"  # already valid: kept as is
    names = {cgroup_name(raw) for raw in ("a.b", "a_b", "a/b", "..", ".", "")}
    assert len(names) == 6
    for raw in ("a.b", "a/b", "..", ".", "", "x" * 500, "cgroup.procs"):
        name = cgroup_name(raw)
        assert "/" not in name and "." not in name and 0 < len(name) < 100


@pytest.mark.parametrize("cpu_dir, links", [("cpu,cpuacct", True), ("cpuacct,cpu", False), ("cpuacct", False)])
def test_v1_finds_cpuacct_wherever_it_is_mounted(tmp_path: Path, cpu_dir: str, links: bool) -> None:
    meter = CgroupMeter(v1_tree(tmp_path, cpu_dir=cpu_dir, links=links))
    assert not meter.v2
    assert meter.cpu_ns(PARENT) == 1_000_000 and meter.peak_bytes(PARENT) == 4 * 2**20
    # One entry per mount: the links to cpu,cpuacct are not a second hierarchy.
    assert len({h.resolve() for h in meter.hierarchies()}) == len(meter.hierarchies()) == 4


async def test_v1_begin_takes_the_baseline_and_resets_the_watermark(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    meter = CgroupMeter(root)
    metering = await meter.begin(None, live(pooled=True))  # type: ignore[arg-type]
    watermark = root / "memory" / PARENT.lstrip("/") / "memory.max_usage_in_bytes"
    assert watermark.read_text() == "0"  # the kernel then shows the current usage
    (root / "cpu,cpuacct" / PARENT.lstrip("/") / "cpuacct.usage").write_text("251000000\n")
    watermark.write_text("123456789\n")
    usage = await metering.finish()
    assert (usage.cpu_ns, usage.peak_memory_bytes, usage.method) == (250_000_000, 123456789, "cgroup")


async def test_a_cold_container_counts_from_its_creation(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    metering = await CgroupMeter(root).begin(None, live(pooled=False))  # type: ignore[arg-type]
    usage = await metering.finish()  # no baseline taken, no watermark reset
    assert (usage.cpu_ns, usage.peak_memory_bytes) == (1_000_000, 4 * 2**20)


async def test_v2_cpu_stat_and_memory_peak(tmp_path: Path) -> None:
    root = v2_tree(tmp_path)
    meter = CgroupMeter(root)
    assert meter.v2 and meter.hierarchies() == [root]
    assert meter.cpu_ns(PARENT) == 1_500_000 and meter.peak_bytes(PARENT) == 8 * 2**20
    metering = await meter.begin(None, live(pooled=True))  # type: ignore[arg-type]
    slot = root / PARENT.lstrip("/")
    assert (slot / "memory.peak").read_text().startswith("reset")  # the per-fd reset was asked for
    (slot / "cpu.stat").write_text("usage_usec 901500\n")
    (slot / "memory.peak").write_text("209715200\n")  # read back through the kept fd
    usage = await metering.finish()
    assert (usage.cpu_ns, usage.peak_memory_bytes) == (900_000_000, 200 * 2**20)


async def test_v2_without_memory_peak_still_reports_cpu(tmp_path: Path) -> None:
    meter = CgroupMeter(v2_tree(tmp_path, peak=False))  # a kernel before 5.19
    metering = await meter.begin(None, live(pooled=True))  # type: ignore[arg-type]
    usage = await metering.finish()
    assert usage.cpu_ns == 0 and usage.peak_memory_bytes is None and usage.method == "cgroup"


async def test_a_parent_the_engine_never_made_reports_nothing(tmp_path: Path) -> None:
    meter = CgroupMeter(v2_tree(tmp_path))
    metering = await meter.begin(None, SimpleNamespace(id="x", cgroup_parent="/executor/inst/other",
                                                        pooled=False, idle_cpu_ns=None))  # type: ignore[arg-type]
    usage = await metering.finish()
    assert usage.method is None and usage.cpu_ns is None and usage.peak_memory_bytes is None


def test_parse_cpu_stat() -> None:
    assert parse_cpu_stat_usec("usage_usec 42\nuser_usec 40\n") == 42
    assert parse_cpu_stat_usec("user_usec 40\n") is None


def test_release_removes_the_parent_everywhere_and_retries_a_busy_one(tmp_path: Path) -> None:
    root = tmp_path
    for name in ("cpu", "memory", "pids"):
        (root / name / "executor/inst/a").mkdir(parents=True)
        (root / name / "executor/inst/b").mkdir(parents=True)
    leaf = root / "memory/executor/inst/b/container"
    leaf.mkdir()  # b's container cgroup is still there
    meter = CgroupMeter(root)
    meter.release("/executor/inst/a")
    meter.release("/executor/inst/b")
    assert not any((root / n / "executor/inst/a").exists() for n in ("cpu", "memory", "pids"))
    assert (root / "memory/executor/inst/b").exists()
    leaf.rmdir()
    meter.release(None)  # any later release retries it
    assert not (root / "memory/executor/inst/b").exists()
    assert meter.sweep("inst") == 0
    assert not any((root / n / "executor/inst").exists() for n in ("cpu", "memory", "pids"))


def test_sweep_takes_empty_slots_and_leaves_busy_ones(tmp_path: Path) -> None:
    (tmp_path / "memory/executor/inst/empty").mkdir(parents=True)
    (tmp_path / "memory/executor/inst/busy/container").mkdir(parents=True)
    (tmp_path / "memory/executor/other/empty").mkdir(parents=True)
    assert CgroupMeter(tmp_path).sweep("inst") == 1
    assert (tmp_path / "memory/executor/inst/busy/container").exists()
    assert (tmp_path / "memory/executor/other/empty").exists()  # another instance's


V1_SAMPLE = {"cpu_stats": {"cpu_usage": {"total_usage": 5_000_000}},
             "memory_stats": {"usage": 3_000_000, "max_usage": 9_000_000}}
V2_SAMPLE = {"cpu_stats": {"cpu_usage": {"total_usage": 5_000_000}}, "memory_stats": {"usage": 3_000_000}}
EXITED = {"cpu_stats": {"cpu_usage": {"total_usage": 0}}, "memory_stats": {}, "read": "0001-01-01T00:00:00Z"}


def test_parse_stats() -> None:
    assert parse_stats(V1_SAMPLE) == (5_000_000, 3_000_000, 9_000_000)
    assert parse_stats(V2_SAMPLE) == (5_000_000, 3_000_000, None)
    assert parse_stats(EXITED) is None and parse_stats({}) is None


async def test_stats_cold_counts_the_watermark_and_everything_since_creation() -> None:
    metering = _StatsMetering(None, "c", cpu_base=0, watermark_is_task=True)  # type: ignore[arg-type]
    metering.record(40_000_000, 3_000_000, 200_000_000)
    metering.record(1_040_000_000, 2_000_000, 210_000_000)
    usage = await metering.finish()
    assert (usage.cpu_ns, usage.peak_memory_bytes, usage.method) == (1_040_000_000, 210_000_000, "stats")


async def test_stats_pooled_ignores_the_wait_in_the_pool() -> None:
    metering = _StatsMetering(None, "c", cpu_base=None, watermark_is_task=False)  # type: ignore[arg-type]
    metering.record(700_000_000, 1_000_000, 210_000_000)  # first sample after the claim: the baseline
    metering.record(750_000_000, 5_000_000, 210_000_000)
    usage = await metering.finish()
    assert (usage.cpu_ns, usage.peak_memory_bytes) == (50_000_000, 5_000_000)


async def test_stats_a_task_that_ends_before_its_first_sample_reports_nothing() -> None:
    metering = _StatsMetering(None, "c", cpu_base=0, watermark_is_task=True)  # type: ignore[arg-type]
    assert (await metering.finish()).method is None


def test_choice(tmp_path: Path) -> None:
    v1 = v1_tree(tmp_path / "v1")
    cgroupfs = {"CgroupDriver": "cgroupfs", "CgroupVersion": "1"}
    assert isinstance(choose_meter("auto", cgroupfs, v1), CgroupMeter)
    assert isinstance(choose_meter("auto", {"CgroupDriver": "systemd", "CgroupVersion": "1"}, v1), StatsMeter)
    assert isinstance(choose_meter("auto", {"CgroupDriver": "cgroupfs", "CgroupVersion": "2"}, v1), StatsMeter)
    assert isinstance(choose_meter("cgroup", {"CgroupDriver": "systemd"}, v1), CgroupMeter)  # forced
    assert isinstance(choose_meter("stats", cgroupfs, v1), StatsMeter)
    assert choose_meter("off", cgroupfs, v1) is None
    v2 = v2_tree(tmp_path / "v2")
    assert isinstance(choose_meter("auto", {"CgroupDriver": "cgroupfs", "CgroupVersion": "2"}, v2), CgroupMeter)
    assert isinstance(choose_meter("auto", cgroupfs, tmp_path / "nothing-here"), StatsMeter)


def test_v2_oom_kills_come_from_the_parents_memory_events(tmp_path: Path) -> None:
    root = v2_tree(tmp_path)
    meter = CgroupMeter(root)
    assert meter.enforce_memory(PARENT, 16 * 2**20) == 0  # v2 counts hierarchically: the engine's limit is the limit
    assert meter.oom.kills(PARENT) is None  # no memory.events: unknown, never "no kill"
    (root / PARENT.lstrip("/") / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n")
    assert meter.oom.kills(PARENT) == 1
    assert parse_oom_kills("oom 3\noom_kill 0\noom_group_kill 0\n") == 0 and parse_oom_kills("") is None


def test_v1_without_a_usable_memory_hierarchy_leaves_the_limit_to_the_engine(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    (root / "memory").rename(root / "elsewhere")  # no memory hierarchy at all
    meter = CgroupMeter(root)
    assert meter.enforce_memory(PARENT, 16 * 2**20) == 0 and meter.oom.kills(PARENT) is None
