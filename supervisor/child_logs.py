"""Child stdout/stderr: one pipe per child start, each line tagged with the child id.

Lines go to factoryd's log stream (journald under systemd) and into a per-child ring
buffer that `factoryctl logs ID` reads. A pipe is read until EOF, also after its child
died, so the last words of a crashing child are not lost. Each line of a child is
numbered (from 1, across its restarts) so that `factoryctl logs -f` asks for what came
after the last line it printed and learns how many the ring dropped in between.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import deque
from typing import TextIO

_RING_LINES = 500
_MAX_RINGS = 1000  # dynamic children get new ids forever: forget the oldest idle rings
_MAX_LINE = 8192
_READS_PER_CALL = 2  # at most 128 KiB (~0.2 s of 2-byte lines) per wake-up: a child
# that never pauses (`yes`) must not keep the single-threaded daemon from its other work


class Ring:
    """A child's last lines, numbered: (seq, wall-clock ts, text)."""

    def __init__(self) -> None:
        self.lines: deque[tuple[int, float, str]] = deque(maxlen=_RING_LINES)
        self.last_seq = 0

    def append(self, ts: float, text: str) -> None:
        self.last_seq += 1
        self.lines.append((self.last_seq, ts, text))

    def after(self, seq: int, limit: int) -> tuple[list[tuple[float, str]], int, int]:
        """(the first `limit` lines numbered above `seq`, the number of the last one
        returned (or `seq`), how many after `seq` the ring no longer holds).

        A `seq` beyond the last line (numbering began anew: another factoryd, or the
        ring was forgotten and made again) counts as 0.
        """
        if seq > self.last_seq:
            seq = 0
        first = self.lines[0][0] if self.lines else self.last_seq + 1
        dropped = max(0, first - seq - 1)
        skip = max(0, seq + 1 - first)
        taken = list(itertools.islice(self.lines, skip, skip + limit))
        return [(ts, text) for _, ts, text in taken], (taken[-1][0] if taken else seq), dropped


class ChildLogs:
    def __init__(self, sink: TextIO) -> None:
        self._sink = sink
        self._pipes: dict[int, tuple[str, bytearray]] = {}  # read fd -> (child id, partial)
        self.rings: dict[str, Ring] = {}

    def open_pipe(self, child_id: str) -> tuple[int, int]:
        """A fresh (read, write) pair for a child start; the caller passes `write` on."""
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        self._pipes[read_fd] = (child_id, bytearray())
        if child_id not in self.rings:
            self._forget_idle_rings(_MAX_RINGS - 1)
            self.rings[child_id] = Ring()
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
                self._emit(child_id, rest)
                rest.clear()
            partial[:] = rest
        return True

    def _emit(self, child_id: str, line: bytes | bytearray) -> None:
        text = line.decode(errors="replace").rstrip("\r")
        self.rings[child_id].append(time.time(), text)
        with contextlib.suppress(OSError, ValueError):
            self._sink.write(f"[{child_id}] {text}\n")
            self._sink.flush()

    def tail(self, child_id: str, lines: int) -> list[tuple[float, str]]:
        ring = self.rings.get(child_id)
        if ring is None or lines <= 0:
            return []
        return [(ts, text) for _, ts, text in list(ring.lines)[-lines:]]

    def close(self) -> None:
        for fd in list(self._pipes):
            with contextlib.suppress(OSError):
                self.read(fd)
            if fd in self._pipes:
                del self._pipes[fd]
                with contextlib.suppress(OSError):
                    os.close(fd)
