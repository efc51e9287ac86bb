"""StderrRelay (executor/executions/progress.py): stderr pieces in, capped line payloads out,
never blocking the task. Pure: a list stands for Redis, a settable clock for time."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from executor.executions.progress import StderrRelay


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    """A publisher that keeps what it is given, in order; `gate` held shut makes it as slow as Redis can be."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, *payloads: str) -> None:
        self.calls += 1
        await self.gate.wait()
        self.payloads.extend(json.loads(payload) for payload in payloads)

    @property
    def lines(self) -> list[str]:
        return [p["line"] for p in self.payloads if "line" in p]


def relay(sink: Sink, **caps: Any) -> StderrRelay:
    caps.setdefault("max_bytes", 1 << 20)
    caps.setdefault("clock", Clock())
    return StderrRelay(sink, **caps)


async def test_lines_are_cut_at_their_ends_across_pieces() -> None:
    sink = Sink()
    r = relay(sink)
    for piece in (b"one\ntw", b"o\r\nthree\rfour\r", b"\nfive\n\nsix"):
        r.feed(piece)
    await asyncio.sleep(0)
    assert "six" not in sink.lines  # a partial line waits for its end...
    await r.close()
    assert sink.lines == ["one", "two", "three", "four", "five", "", "six"]  # ...or the end of the task
    assert [p["seq"] for p in sink.payloads] == list(range(1, 8))


async def test_a_long_partial_line_goes_out_cut_at_a_character_boundary() -> None:
    sink = Sink()
    r = relay(sink, max_line_bytes=10)
    r.feed(b"abcdefghi" + "é".encode() * 3)  # é is 2 bytes: the one at bytes 9-10 is not split
    r.feed(b"\n")
    r.feed(b"x" * 25 + b"\n")  # a whole line longer than the cap: pieces too
    await r.close()
    assert sink.lines == ["abcdefghi", "ééé", "x" * 10, "x" * 10, "x" * 5]
    assert all(len(line.encode()) <= 10 for line in sink.lines)


async def test_invalid_utf8_is_replaced() -> None:
    sink = Sink()
    r = relay(sink)
    r.feed(b"ok \xff\xfe bytes\n\xc3")  # the last: a character cut off by the end of the task
    await r.close()
    assert sink.lines == ["ok \ufffd\ufffd bytes", "\ufffd"]


async def test_the_rate_is_capped_and_the_dropped_lines_announced_when_it_resumes() -> None:
    sink, clock = Sink(), Clock()
    r = relay(sink, rate_per_s=10, burst=5, clock=clock)
    r.feed(b"".join(b"burst %d\n" % i for i in range(8)))  # 5 go, 3 over the burst
    clock.now += 0.25  # 2.5 tokens back
    r.feed(b"later 1\nlater 2\nlater 3\n")
    await r.close()
    assert sink.payloads == [
        *({"line": f"burst {i}", "seq": i + 1} for i in range(5)),
        {"dropped": 3},
        {"line": "later 1", "seq": 9},
        {"line": "later 2", "seq": 10},
        {"dropped": 1},  # at the end, those never announced
    ]


async def test_the_bytes_relayed_stay_within_the_log_cap() -> None:
    sink = Sink()
    r = relay(sink, max_bytes=20)
    r.feed(b"0123456789\n" * 5)
    await r.close()
    assert sink.lines == ["0123456789", "0123456789"]
    assert r.relayed_bytes == 20 and sink.payloads[-1] == {"dropped": 3}


async def test_a_slow_publisher_never_holds_the_task_back() -> None:
    """Lines past the in-flight bound are dropped while Redis does not answer; feed never waits."""
    sink = Sink()
    sink.gate.clear()
    r = relay(sink, in_flight=4)
    r.feed(b"".join(b"line %d\n" % i for i in range(10)))  # returns at once: nothing awaited
    await asyncio.sleep(0)  # the sender takes the first and waits on "Redis"
    r.feed(b"line 10\nline 11\nline 12\nline 13\nline 14\n")
    sink.gate.set()
    await r.close()
    relayed = sink.lines
    assert relayed[0] == "line 0" and len(relayed) < 15, relayed
    assert relayed == sorted(relayed, key=lambda line: int(line.split()[1]))  # in order
    dropped = sum(p.get("dropped", 0) for p in sink.payloads)
    assert len(relayed) + dropped == 15, sink.payloads


async def test_a_publisher_that_fails_costs_only_the_live_lines() -> None:
    async def broken(*payloads: str) -> None:
        raise ConnectionError("redis is away")

    r = StderrRelay(broken, max_bytes=1 << 20, clock=Clock())
    r.feed(b"a\nb\n")
    await r.close()
    assert r.failed == 2


async def test_close_waits_a_bounded_time_for_a_publisher_that_hangs() -> None:
    sink = Sink()
    sink.gate.clear()
    r = relay(sink)
    r.feed(b"stuck\n")
    await asyncio.wait_for(r.close(drain_s=0.05), 5)
    assert sink.payloads == []


async def test_nothing_written_to_stderr_publishes_nothing() -> None:
    sink = Sink()
    r = relay(sink)
    r.feed(b"")
    await r.close()
    assert sink.calls == 0
