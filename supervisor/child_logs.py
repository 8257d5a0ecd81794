"""Child stdout/stderr: one pipe per child start, each line tagged with the child id.

Lines go to factoryd's log stream (journald under systemd) and into a per-child ring
buffer that `factoryctl logs ID` reads. A pipe is read until EOF, also after its child
died, so the last words of a crashing child are not lost.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from typing import TextIO

_RING_LINES = 500
_MAX_RINGS = 1000  # dynamic children get new ids forever: forget the oldest idle rings
_MAX_LINE = 8192
_READS_PER_CALL = 2  # at most 128 KiB (~0.2 s of 2-byte lines) per wake-up: a child
# that never pauses (`yes`) must not keep the single-threaded daemon from its other work


class ChildLogs:
    def __init__(self, sink: TextIO) -> None:
        self._sink = sink
        self._pipes: dict[int, tuple[str, bytearray]] = {}  # read fd -> (child id, partial)
        self.rings: dict[str, deque[tuple[float, str]]] = {}

    def open_pipe(self, child_id: str) -> tuple[int, int]:
        """A fresh (read, write) pair for a child start; the caller passes `write` on."""
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        self._pipes[read_fd] = (child_id, bytearray())
        if child_id not in self.rings:
            self._forget_idle_rings(_MAX_RINGS - 1)
            self.rings[child_id] = deque(maxlen=_RING_LINES)
        return read_fd, write_fd

    def _forget_idle_rings(self, keep: int) -> None:
        open_ids = {cid for cid, _ in self._pipes.values()}
        for cid in list(self.rings):  # insertion order: oldest first
            if len(self.rings) <= keep:
                return
            if cid not in open_ids:
                del self.rings[cid]

    def fds(self) -> list[int]:
        return list(self._pipes)

    def read(self, fd: int) -> bool:
        """Consume what is waiting on `fd` (bounded: the selector calls again while more
        waits); returns False once it hit EOF and was closed."""
        child_id, partial = self._pipes[fd]
        for _ in range(_READS_PER_CALL):
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not data:
                if partial:
                    self._emit(child_id, bytes(partial))
                del self._pipes[fd]
                os.close(fd)
                return False
            partial += data
            *lines, rest = partial.split(b"\n")
            for line in lines:
                self._emit(child_id, line)
            if len(rest) > _MAX_LINE:
                self._emit(child_id, bytes(rest))
                rest = b""
            partial[:] = rest
        return True

    def _emit(self, child_id: str, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip("\r")
        self.rings[child_id].append((time.time(), text))
        with contextlib.suppress(OSError, ValueError):
            self._sink.write(f"[{child_id}] {text}\n")
            self._sink.flush()

    def tail(self, child_id: str, lines: int) -> list[tuple[float, str]]:
        ring = self.rings.get(child_id)
        if ring is None:
            return []
        return list(ring)[-lines:] if lines > 0 else []

    def close(self) -> None:
        for fd in list(self._pipes):
            with contextlib.suppress(OSError):
                self.read(fd)
            if fd in self._pipes:
                del self._pipes[fd]
                with contextlib.suppress(OSError):
                    os.close(fd)
