"""factoryd's signals as bytes on a pipe its selector watches: no work in a handler.

The handlers do nothing; Python's wakeup fd writes each signal's number to the pipe,
so the loop learns of every SIGTERM, SIGINT, SIGHUP and SIGCHLD in order, from the
main loop or from a nested wait, and acts on them there.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

DAEMON_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class SignalWakeup:
    """The pipe is made at once; the handlers and wakeup fd are taken by `install`."""

    def __init__(self, signals: tuple[int, ...] = DAEMON_SIGNALS) -> None:
        self.signals = signals
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, Any] = {}

    def fileno(self) -> int:
        return self._r

    def install(self) -> None:
        """Take over the wakeup fd and the handlers (main thread only)."""
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, lambda *_: None)

    def read_nowait(self) -> bytes:
        """The signal numbers received since the last call, one per byte, in order."""
        try:
            return os.read(self._r, 4096)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        """Give back the wakeup fd and close the pipe; signals are then ignored quietly
        until `restore_handlers`."""
        signal.set_wakeup_fd(-1)
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
