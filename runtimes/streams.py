"""Demultiplexing Docker's attach stream, with a cap per stream.

Without a TTY, the engine frames stdout and stderr as an 8-byte header
(stream id, three zero bytes, big-endian length) followed by the payload.
"""

from __future__ import annotations

import struct

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxL")


class CappedDemuxer:
    """Splits frames into stdout and stderr, keeping at most the cap of each.

    Payloads are consumed as they arrive, so a huge frame is never held whole.
    `overflowed` names the first stream that went past its cap: the caller
    kills the task then, so a flood costs at most one read buffer beyond it.
    """

    def __init__(self, max_stdout: int, max_stderr: int) -> None:
        self._caps = {STDOUT: max_stdout, STDERR: max_stderr}
        self._buffers = {STDOUT: bytearray(), STDERR: bytearray()}
        self._header = bytearray()
        self._stream = 0
        self._remaining = 0
        self.overflowed: str | None = None

    @property
    def stdout(self) -> bytes:
        return bytes(self._buffers[STDOUT])

    @property
    def stderr(self) -> bytes:
        return bytes(self._buffers[STDERR])

    @property
    def stderr_size(self) -> int:
        """How many stderr bytes are kept so far (never more than its cap)."""
        return len(self._buffers[STDERR])

    def stderr_since(self, offset: int) -> bytes:
        """The stderr bytes kept after `offset` (a stderr_size read before a feed): what that feed
        added, without copying what was there; bytes past the cap were never kept, so never here."""
        with memoryview(self._buffers[STDERR]) as kept, kept[offset:] as added:
            return bytes(added)

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._remaining == 0:
                need = _HEADER.size - len(self._header)
                self._header += view[:need]
                view = view[need:]
                if len(self._header) < _HEADER.size:
                    return
                self._stream, self._remaining = _HEADER.unpack(self._header)
                self._header.clear()
                continue
            chunk = view[:self._remaining]
            view = view[len(chunk):]
            self._remaining -= len(chunk)
            self._keep(self._stream, chunk)

    def _keep(self, stream: int, chunk: memoryview) -> None:
        buffer = self._buffers.get(stream)
        if buffer is None:  # an id we do not collect (stdin): drop it
            return
        room = self._caps[stream] - len(buffer)
        if len(chunk) > room:
            buffer += chunk[:max(room, 0)]
            if self.overflowed is None:
                self.overflowed = "stdout" if stream == STDOUT else "stderr"
        else:
            buffer += chunk
