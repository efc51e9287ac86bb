"""Merging requested limits over defaults, within the operator's maximums."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from executor.errors import LimitExceeded, RequestInvalid
from executor.settings import Limits

# The engine refuses memory limits under 6 MB; below one pid nothing starts.
_MINIMUMS = {"memory_mb": 6, "cpus": 0.01, "pids": 1, "timeout_s": 0.1}
# gVisor's own threads count against a container's pids limit: under this, runsc cannot even start
# the sandbox here (measured: `docker run --runtime runsc --pids-limit 36` fails, 40 starts `sh`).
# A task that can never start must be refused up front, not run and charged as its own failure.
RUNSC_MIN_PIDS = 40
_TYPES: dict[str, tuple[type[int | float], ...]] = {
    "memory_mb": (int,), "cpus": (int, float), "pids": (int,), "timeout_s": (int, float),
}


def resolve_limits(requested: Any, base: Limits, maximum: Limits, *, field: str = "limits") -> Limits:
    """`base` with the keys of `requested` applied; every value checked against `maximum`."""
    if requested is None:
        return base
    if not isinstance(requested, dict):
        raise RequestInvalid(f"{field} must be an object", errors=[{"pointer": f"/{field}", "detail": "not an object"}])
    unknown = sorted(set(requested) - set(_TYPES))
    if unknown:
        raise RequestInvalid(
            f"unknown {field} key(s): {', '.join(unknown)}",
            errors=[{"pointer": f"/{field}/{key}", "detail": "unknown limit"} for key in unknown],
        )
    bad, too_high = [], []
    for key, value in requested.items():
        if isinstance(value, bool) or not isinstance(value, _TYPES[key]) or value < _MINIMUMS[key]:
            bad.append({"pointer": f"/{field}/{key}", "detail": f"must be a number >= {_MINIMUMS[key]}"})
        elif value > getattr(maximum, key):
            too_high.append(
                {"pointer": f"/{field}/{key}", "detail": f"{value} is above the maximum of {getattr(maximum, key)}"}
            )
    if bad:
        raise RequestInvalid(f"invalid {field}", errors=bad)
    if too_high:
        raise LimitExceeded("; ".join(e["detail"] for e in too_high), errors=too_high)
    # Each value was checked above: the whole-number limits are ints, the others numbers (made floats).
    return replace(
        base,
        memory_mb=requested.get("memory_mb", base.memory_mb),
        cpus=float(requested.get("cpus", base.cpus)),
        pids=requested.get("pids", base.pids),
        timeout_s=float(requested.get("timeout_s", base.timeout_s)),
    )


def check_runtime_floor(limits: Limits, oci_runtime: str | None, *, field: str = "limits") -> None:
    """Refuse limits a task cannot start under in its OCI runtime (None: the engine's default, runc)."""
    if oci_runtime == "runsc" and limits.pids < RUNSC_MIN_PIDS:
        detail = (f"under gVisor (runsc) a task needs pids >= {RUNSC_MIN_PIDS}: gVisor's own threads count "
                  "against the limit, and the sandbox cannot start below it")
        raise RequestInvalid(detail, errors=[{"pointer": f"/{field}/pids", "detail": detail}])
