"""The sd_notify channel from children to factoryd.

Every child's NOTIFY_SOCKET names this one datagram socket (owner only). The kernel
stamps each datagram with the sender's pid (SO_PASSCRED), so a child speaks only for
itself: READY=1 marks its pid ready, STATUS= text goes to its record for `factoryctl
status`. By default datagrams from pids that are not supervised workers (grandchildren,
strangers) are ignored, as systemd's NotifyAccess=main does; a child configured with
`notify_access = "all"` is also spoken for by any process of its process group. (As with
systemd, a sender that exits at once may be gone before its datagram is read: then it
cannot be placed and is ignored. Keep the sender alive until the child is up.)
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

_UCRED = struct.Struct("3i")  # pid, uid, gid
_MAX_STATUS = 200


class StatusSink(Protocol):
    def set_status_text(self, child_id: str, text: str) -> None: ...


class ChildNotify:
    def __init__(self, path: Path) -> None:
        self.path = path
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

    def read(self, owner_of: Callable[[int], tuple[StatusSink, str, int] | None]) -> None:
        """Take every waiting datagram; `owner_of(pid)` names the sender's supervisor,
        child id and the child's own pid (the sender's, or its group leader's), or None
        for a sender that may not speak for any supervised worker."""
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
            owner = owner_of(pid) if pid else None
            if pid is None or owner is None:
                continue
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
