"""inotify on the JSONL store, its fd in the service loop's poller.

The watch is on the file's directory, not the file: writers (ours, bd's export, an
editor) replace it by rename, which would end a watch on the file's inode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from inotify_simple import INotify, flags

from ipc.service import READ, ServiceLoop

MASK = flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.CREATE | flags.DELETE


class StoreWatch:
    """Calls `on_change()` when the file may have changed: written, replaced by rename,
    created or removed (or the kernel's event queue overflowed). Raises OSError when the
    directory cannot be watched."""

    def __init__(self, path: Path, loop: ServiceLoop, on_change: Callable[[], None]) -> None:
        self.name = path.name
        self.inotify = INotify(nonblocking=True)
        try:
            self.inotify.add_watch(str(path.parent), MASK)
        except OSError:
            self.inotify.close()
            raise
        self._on_change = on_change
        self.events = 0
        self._loop = loop
        loop.watch(self.inotify.fileno(), READ, self._ready)

    def _ready(self, _events: int) -> None:
        try:
            events = self.inotify.read(timeout=0)
        except BlockingIOError:
            return
        if any(e.name == self.name or e.mask & flags.Q_OVERFLOW for e in events):
            self.events += 1
            self._on_change()

    def close(self) -> None:
        self._loop.unwatch(self.inotify.fileno())
        self.inotify.close()
