"""Unit tests of the attach-stream demultiplexer (pure logic)."""

from __future__ import annotations

import struct

from runtimes.streams import CappedDemuxer


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_splits_stdout_and_stderr() -> None:
    demux = CappedDemuxer(100, 100)
    demux.feed(frame(1, b"out1") + frame(2, b"err") + frame(1, b"out2"))
    assert demux.stdout == b"out1out2" and demux.stderr == b"err" and demux.overflowed is None


def test_frames_split_across_reads_at_every_offset() -> None:
    data = frame(1, b"hello") + frame(2, b"world!") + frame(1, b"")
    for cut in range(len(data) + 1):
        demux = CappedDemuxer(100, 100)
        demux.feed(data[:cut])
        demux.feed(data[cut:])
        assert (demux.stdout, demux.stderr) == (b"hello", b"world!"), cut


def test_byte_by_byte() -> None:
    demux = CappedDemuxer(100, 100)
    for byte in frame(2, b"abc") + frame(1, b"xyz"):
        demux.feed(bytes([byte]))
    assert (demux.stdout, demux.stderr) == (b"xyz", b"abc")


def test_cap_keeps_exactly_the_cap_and_names_the_stream() -> None:
    demux = CappedDemuxer(10, 100)
    demux.feed(frame(1, b"0123456789") + frame(2, b"log"))
    assert demux.overflowed is None  # exactly at the cap is fine
    demux.feed(frame(1, b"X"))
    assert demux.stdout == b"0123456789" and demux.overflowed == "stdout"


def test_stderr_cap() -> None:
    demux = CappedDemuxer(100, 4)
    demux.feed(frame(2, b"too long"))
    assert demux.stderr == b"too " and demux.overflowed == "stderr"


def test_huge_frame_is_consumed_incrementally() -> None:
    demux = CappedDemuxer(8, 8)
    header = struct.pack(">BxxxL", 1, 10**9)
    demux.feed(header + b"a" * 5)
    assert demux.stdout == b"aaaaa" and demux.overflowed is None
    demux.feed(b"b" * 5)
    assert demux.stdout == b"aaaaabbb" and demux.overflowed == "stdout"


def test_stdin_frames_are_ignored() -> None:
    demux = CappedDemuxer(10, 10)
    demux.feed(frame(0, b"echo") + frame(1, b"ok"))
    assert demux.stdout == b"ok" and demux.stderr == b""


def test_the_stderr_a_feed_added_never_goes_past_the_cap() -> None:
    """What runtimes/container.py hands to on_stderr after each read (the live progress relay)."""
    demux = CappedDemuxer(100, 10)
    kept = demux.stderr_size
    demux.feed(frame(2, b"one\n") + frame(1, b"out") + frame(2, b"tw"))
    assert demux.stderr_since(kept) == b"one\ntw"
    kept = demux.stderr_size
    demux.feed(frame(1, b"more out"))
    assert demux.stderr_size == kept and demux.stderr_since(kept) == b""
    # It grows again (stderr_since left no view of it behind), up to the cap of 10: "three" is cut.
    demux.feed(frame(2, b"o\nthree\n"))
    assert demux.stderr_since(kept) == b"o\nth" and demux.overflowed == "stderr"
    assert demux.stderr == b"one\ntwo\nth"
