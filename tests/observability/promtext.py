"""A strict little parser of the Prometheus text format (0.0.4), for tests: what a scraper
would refuse, it refuses too."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}


def _labels(raw: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(raw):
        match = _LABEL.match(raw, position)
        assert match, f"bad labels: {raw!r} at {position}"
        labels[match.group(1)] = re.sub(r'\\[\\n"]', lambda m: _UNESCAPE[m.group(0)], match.group(2))
        position = match.end()
    return labels


def _value(raw: str) -> float:
    if raw in ("+Inf", "-Inf", "NaN"):
        return float(raw.replace("Inf", "inf").replace("NaN", "nan"))
    return float(raw)


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        found = [v for n, lab, v in self.samples if n == name and lab == labels]
        assert len(found) == 1, (name, labels, [s for s in self.samples if s[0] == name])
        return found[0]

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(lab, v) for n, lab, v in self.samples if n == name]

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """(le, cumulative count) of one histogram series, in order."""
        return [(_value(lab["le"]), v) for n, lab, v in self.samples
                if n == f"{name}_bucket" and {k: x for k, x in lab.items() if k != "le"} == labels]


def family_of(name: str, types: dict[str, str]) -> str:
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and types.get(base) == "histogram":
            return base
    raise AssertionError(f"sample {name} before its # TYPE")


def parse(text: str) -> Exposition:
    assert text.endswith("\n"), "the exposition ends with a newline"
    out = Exposition()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            out.helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in out.types, f"{name} typed twice"
            out.types[name] = kind
        elif line.startswith("#") or not line:
            continue
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.group(1), _labels(match.group(2) or ""), _value(match.group(3))
            family_of(name, out.types)
            out.samples.append((name, labels, value))
    for name, kind in out.types.items():
        if kind == "histogram":
            _check_histogram(out, name)
    return out


def _check_histogram(out: Exposition, name: str) -> None:
    for labels, count in out.series(f"{name}_count"):
        buckets = out.buckets(name, **labels)
        assert buckets and math.isinf(buckets[-1][0]), f"{name}{labels}: no +Inf bucket"
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds), f"{name}{labels}: buckets out of order"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{name}{labels}: buckets not cumulative"
        assert counts[-1] == count, f"{name}{labels}: +Inf bucket {counts[-1]} != count {count}"
        assert len(out.series(f"{name}_sum")) >= 1


def promtool_check(text: bytes) -> str:
    """`promtool check metrics` (Debian package prometheus) on an exposition: what it complains
    of, '' when nothing. Blocking: from a coroutine, call it in a thread."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/setup installs it)"
    found = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    complaints = (found.stdout + found.stderr).decode().strip()
    assert found.returncode == 0, complaints
    return complaints
