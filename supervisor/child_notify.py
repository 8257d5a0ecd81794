"""The sd_notify channel from children to factoryd.

Every child's NOTIFY_SOCKET names this one datagram socket (owner only). The kernel
stamps each datagram with the sender's pid (SO_PASSCRED), so a child speaks only for
itself: READY=1 marks its pid ready, STATUS= text goes to its record for `factoryctl
status`. By default datagrams from pids that are not supervised workers (grandchildren,
strangers) are ignored, as systemd's NotifyAccess=main does; a child configured with
`notify_access = "all"` is also spoken for by any process of its process group. (As with
systemd, a sender that exits at once may be gone before its datagram is read: then it
cannot be placed and is ignored. Keep the sender alive until the child is up.)

A child may notify before factoryd knows its pid: the datagram can arrive while the
zygote's spawn reply is still on its way. A datagram no worker claims is therefore kept
(at most MAX_UNCLAIMED of them, for UNCLAIMED_TTL_S) and replayed when a pid is
registered (`adopt`), so a READY=1 sent first thing is never lost to that race.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_UCRED = struct.Struct("3i")  # pid, uid, gid
_MAX_STATUS = 200
MAX_UNCLAIMED = 256  # datagrams kept for pids not (yet) registered
UNCLAIMED_TTL_S = 120.0  # longer than any spawn takes to report its pid


class StatusSink(Protocol):
    def set_status_text(self, child_id: str, text: str) -> None: ...


# Whom a datagram from (pid, its process group) speaks for: the supervisor, the child id
# and the child's own pid, or None for a sender that may not speak for any worker.
OwnerOf = Callable[[int, int | None], tuple[StatusSink, str, int] | None]


@dataclass(frozen=True)
class _Unclaimed:
    pid: int
    pgid: int | None
    data: bytes
    received: float


class ChildNotify:
    def __init__(self, path: Path, owner_of: OwnerOf) -> None:
        self.path = path
        self.owner_of = owner_of
        self._unclaimed: deque[_Unclaimed] = deque(maxlen=MAX_UNCLAIMED)
        self.ignored = 0  # datagrams that no worker ever claimed
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            self._sock.bind(str(path))
        finally:
            os.umask(old_umask)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.setblocking(False)
        self._ready: set[int] = set()

    def fileno(self) -> int:
        return self._sock.fileno()

    def is_ready(self, pid: int) -> bool:
        return pid in self._ready

    def forget(self, pid: int) -> None:
        """The pid exited: its readiness must not carry over to a reused pid."""
        self._ready.discard(pid)
        self._unclaimed = deque(
            (u for u in self._unclaimed if pid not in (u.pid, u.pgid)), maxlen=MAX_UNCLAIMED
        )

    def read(self) -> None:
        """Take every waiting datagram and apply it to the worker it speaks for; one no
        worker claims yet is kept for `adopt`."""
        while True:
            try:
                data, ancdata, _flags, _addr = self._sock.recvmsg(
                    4096, socket.CMSG_SPACE(_UCRED.size)
                )
            except BlockingIOError:
                return
            pid = next(
                (
                    _UCRED.unpack(cdata[: _UCRED.size])[0]
                    for level, kind, cdata in ancdata
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                ),
                None,
            )
            if not pid:
                continue
            try:
                pgid: int | None = os.getpgid(pid)
            except OSError:  # gone before we read its datagram
                pgid = None
            owner = self.owner_of(pid, pgid)
            if owner is None:
                self._keep_unclaimed(_Unclaimed(pid, pgid, data, time.monotonic()))
                continue
            self._apply(owner, data)

    def adopt(self, pid: int) -> None:
        """`pid` is now a supervised worker: apply what it (or, where allowed, its
        process group) said before factoryd knew it."""
        now = time.monotonic()
        kept: deque[_Unclaimed] = deque(maxlen=MAX_UNCLAIMED)
        for item in self._unclaimed:
            if now - item.received > UNCLAIMED_TTL_S:
                self.ignored += 1
                continue
            owner = self.owner_of(item.pid, item.pgid) if pid in (item.pid, item.pgid) else None
            if owner is None:
                kept.append(item)
            else:
                self._apply(owner, item.data)
        self._unclaimed = kept

    def _keep_unclaimed(self, item: _Unclaimed) -> None:
        if len(self._unclaimed) == self._unclaimed.maxlen:
            self.ignored += 1  # the oldest falls out
        self._unclaimed.append(item)

    def _apply(self, owner: tuple[StatusSink, str, int], data: bytes) -> None:
        node, child_id, child_pid = owner
        for line in data.decode(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key == "READY" and value == "1":
                self._ready.add(child_pid)
            elif key == "STATUS":
                node.set_status_text(child_id, value[:_MAX_STATUS])

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
