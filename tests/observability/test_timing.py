"""The timing marks (executor/observability/timing.py): kept only inside a timeline, carried
between processes as text, and turned into a Server-Timing header."""

from __future__ import annotations

import asyncio

from executor.observability import timing


def test_nothing_is_kept_outside_a_timeline() -> None:
    timing.mark("orphan")  # no timeline: a no-op, not an error
    timing.add([("x", 1.0)])
    with timing.timeline("received", at=10.0) as marks:
        timing.mark("authenticated", at=10.002)
    timing.mark("after")
    assert marks == [("received", 10.0), ("authenticated", 10.002)]


def test_marks_made_elsewhere_are_merged_in_time_order() -> None:
    with timing.timeline("received", at=100.0) as marks:
        timing.mark("accepted", at=100.004)
        timing.add(timing.decode(timing.encode([("read", 100.005), ("finished", 100.030)])))
        timing.mark("woken", at=100.031)
    assert [name for name, _ in marks] == ["received", "accepted", "read", "finished", "woken"]
    header = timing.server_timing(marks)
    assert header == ("accepted;dur=4.00, read;dur=1.00, finished;dur=25.00, woken;dur=1.00, total;dur=31.00")


def test_a_message_of_another_form_is_skipped_not_raised() -> None:
    assert timing.decode("read=1000.5,garbage,also=bad,=,claimed=1001") == [("read", 1.0005), ("claimed", 1.001)]
    assert timing.decode("") == []
    assert timing.server_timing([("received", 1.0)]) == ""


def test_the_timeline_follows_the_tasks_it_starts() -> None:
    async def main() -> list[str]:
        with timing.timeline("received") as marks:
            await asyncio.create_task(_mark_in_a_task())
        return [name for name, _ in marks]

    assert asyncio.run(main()) == ["received", "in-task"]


async def _mark_in_a_task() -> None:
    timing.mark("in-task")
