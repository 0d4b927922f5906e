"""Bounded capture of a command's output: the head and the tail are kept, the middle is only counted.

What is streamed while the command runs follows the same bound: the head is passed on as it arrives, then nothing
until the command ends, then a marker with the count of bytes not shown and the tail. So a terminal (or any
`on_output` callback) receives at most what is kept, never the whole of a runaway output.
"""

from __future__ import annotations


class HeadTailBuffer:
    """Keeps at most `limit` bytes: the first half as it arrives, the last half as a sliding tail."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self._head_limit = self.limit // 2
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> bytes:
        """Take a chunk; returns the part of it that joined the head (what a stream may show right away)."""
        self.total += len(chunk)
        shown = b""
        room = self._head_limit - len(self._head)
        if room > 0:
            shown = chunk[:room]
            self._head += shown
            chunk = chunk[room:]
        if not chunk:
            return shown
        tail_limit = self.limit - self._head_limit
        if len(chunk) >= tail_limit:
            self._tail = bytearray(chunk[-tail_limit:])
        else:
            self._tail += chunk
            excess = len(self._tail) - tail_limit
            if excess > 0:
                del self._tail[:excess]
        return shown

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    @property
    def omitted(self) -> int:
        return self.total - len(self._head) - len(self._tail)

    def rest(self) -> bytes:
        """What follows the head once the output has ended: the tail, preceded by a marker when bytes were dropped.

        A stream that showed what `write` returned and then this has shown exactly the kept head and tail."""
        if not self._tail:
            return b""
        if not self.omitted:
            return bytes(self._tail)
        return f"\n[... {self.omitted} bytes not shown ...]\n".encode() + bytes(self._tail)

    def getvalue(self) -> bytes:
        if not self.truncated:
            return bytes(self._head + self._tail)
        marker = f"\n[... {self.omitted} bytes omitted ...]\n".encode()
        return bytes(self._head) + marker + bytes(self._tail)
