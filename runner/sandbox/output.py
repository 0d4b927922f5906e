"""Bounded capture of a command's output: the head and the tail are kept, the middle is only counted."""

from __future__ import annotations


class HeadTailBuffer:
    """Keeps at most `limit` bytes: the first half as it arrives, the last half as a sliding tail."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self._head_limit = self.limit // 2
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        tail_limit = self.limit - self._head_limit
        if len(chunk) >= tail_limit:
            self._tail = bytearray(chunk[-tail_limit:])
        else:
            self._tail += chunk
            excess = len(self._tail) - tail_limit
            if excess > 0:
                del self._tail[:excess]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def getvalue(self) -> bytes:
        if not self.truncated:
            return bytes(self._head + self._tail)
        omitted = self.total - len(self._head) - len(self._tail)
        marker = f"\n[... {omitted} bytes omitted ...]\n".encode()
        return bytes(self._head) + marker + bytes(self._tail)
