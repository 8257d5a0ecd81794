"""POSIX signals as bytes on a pipe a loop can select on: no work in a handler.

"Signal" alone in this project means a bus message (ipc.signals); this module is the one
place that handles the kernel's signals, for factoryd, the zygote and every service.

    pipe = PosixSignalPipe((SIGTERM, SIGINT, SIGHUP, SIGCHLD))
    pipe.install()                  # main thread only: handlers + the wakeup fd
    selector.register(pipe, EVENT_READ)
    ...                             # readable: for signum in pipe.read_nowait(): ...
    pipe.close(); pipe.restore_handlers()

The handlers do nothing; Python's wakeup fd writes each signal's number to the pipe, so
the loop learns of every signal in order, from its main turn or from a nested wait, and
acts on it there. `StopSignals` is the services' use of it: SIGTERM/SIGINT as a stop
request.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

STOP = (signal.SIGTERM, signal.SIGINT)


class PosixSignalPipe:
    """The pipe is made at once; the handlers and wakeup fd are taken by `install`."""

    def __init__(self, signums: tuple[int, ...]) -> None:
        self.signums = signums
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, Any] = {}
        self._previous_wakeup: int | None = None

    def fileno(self) -> int:
        return self._r

    @property
    def write_fd(self) -> int:
        """The end the kernel's wakeup writes to (a forked child closes both ends)."""
        return self._w

    def install(self) -> PosixSignalPipe:
        """Take over the wakeup fd and the handlers (main thread only)."""
        self._previous_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in self.signums:
            self._previous[sig] = signal.signal(sig, _ignore)
        return self

    def read_nowait(self) -> bytes:
        """The signal numbers received since the last call, one per byte, in order."""
        out = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._r, 4096):
                out += chunk
        return out

    def close(self) -> None:
        """Give back the wakeup fd and close the pipe; the signals are then ignored
        quietly until `restore_handlers`."""
        if self._previous_wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            self._previous_wakeup = None
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _ignore(_signum: int, _frame: object) -> None:
    """A handler that does nothing: the wakeup fd carries the news."""


class StopSignals:
    """SIGTERM/SIGINT as a stop request a service's loop can select on.

    with StopSignals() as stop:
        selector.register(stop, EVENT_READ)
        while not stop.requested: ...   # readable: stop.drain()
    """

    def __init__(self, signums: tuple[int, ...] = STOP) -> None:
        self._pipe = PosixSignalPipe(signums)
        self.received: list[int] = []

    def install(self) -> StopSignals:
        self._pipe.install()
        return self

    def restore(self) -> None:
        """Put back the previous handlers and wakeup fd; close the pipe."""
        self._pipe.close()
        self._pipe.restore_handlers()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def fileno(self) -> int:
        return self._pipe.fileno()

    def drain(self) -> None:
        """Take what the pipe holds (call when it is readable)."""
        self.received.extend(self._pipe.read_nowait())

    @property
    def requested(self) -> bool:
        self.drain()
        return bool(self.received)

    @property
    def first(self) -> int | None:
        """The first stop signal received, if any."""
        self.drain()
        return self.received[0] if self.received else None
