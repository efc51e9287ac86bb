"""Unit tests of limit resolution (pure logic)."""

from __future__ import annotations

import pytest

from executor.errors import LimitExceeded, RequestInvalid
from executor.limits import RUNSC_MIN_PIDS, check_runtime_floor, resolve_limits
from executor.settings import Limits

BASE = Limits(memory_mb=128, cpus=1.0, pids=64, timeout_s=10.0)
MAX = Limits(memory_mb=1024, cpus=2.0, pids=256, timeout_s=60.0)


def test_none_keeps_the_base() -> None:
    assert resolve_limits(None, BASE, MAX) is BASE


def test_partial_override() -> None:
    assert resolve_limits({"memory_mb": 256, "timeout_s": 1}, BASE, MAX) == Limits(256, 1.0, 64, 1.0)


def test_above_maximum_names_each_limit() -> None:
    with pytest.raises(LimitExceeded) as caught:
        resolve_limits({"memory_mb": 4096, "pids": 1000}, BASE, MAX)
    assert [e["pointer"] for e in caught.value.errors] == ["/limits/memory_mb", "/limits/pids"]


@pytest.mark.parametrize("requested", [{"pids": 0}, {"memory_mb": 1}, {"cpus": "1"}, {"pids": True}, {"disk": 1}, [1]])
def test_invalid_values(requested) -> None:
    with pytest.raises(RequestInvalid):
        resolve_limits(requested, BASE, MAX)


def test_under_gvisor_a_task_needs_the_pids_its_sandbox_starts_with() -> None:
    """gVisor's threads count against the pids limit: a runsc task below the floor could never start
    and would be charged for it, so it is refused up front (any other runtime is left alone)."""
    low = Limits(memory_mb=64, cpus=1.0, pids=RUNSC_MIN_PIDS - 1, timeout_s=5.0)
    with pytest.raises(RequestInvalid) as refused:
        check_runtime_floor(low, "runsc")
    assert refused.value.errors == [{"pointer": "/limits/pids", "detail": refused.value.errors[0]["detail"]}]
    check_runtime_floor(low, "runc")
    check_runtime_floor(low, None)
    check_runtime_floor(Limits(memory_mb=64, cpus=1.0, pids=RUNSC_MIN_PIDS, timeout_s=5.0), "runsc")
