"""SIGTERM and SIGINT as a readable fd, so a service's select loop stops cleanly.

    with StopSignals() as stop:      # or stop = StopSignals().install() ... stop.restore()
        selector.register(stop, selectors.EVENT_READ)
        while not stop.requested:
            ...                      # when `stop` is readable: stop.drain()

The handlers only record the signal; the wakeup fd makes the loop's select return.
On exit the previous handlers and wakeup fd come back and the socket pair is closed.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from types import FrameType
from typing import Any


class StopSignals:
    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self.received: list[int] = []
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old_wakeup = -1
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)

    def install(self) -> StopSignals:
        """Take over the stop signals and the wakeup fd (main thread only)."""
        self._old_wakeup = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, self._on_signal) for s in self.signals}
        return self

    def restore(self) -> None:
        """Put back the previous handlers and wakeup fd; close the socket pair."""
        signal.set_wakeup_fd(self._old_wakeup)
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}
        self._r.close()
        self._w.close()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    @property
    def requested(self) -> bool:
        return bool(self.received)

    @property
    def first(self) -> int | None:
        """The first stop signal received, if any."""
        return self.received[0] if self.received else None

    def fileno(self) -> int:
        return self._r.fileno()

    def drain(self) -> None:
        """Empty the wakeup socket (call when it is readable)."""
        with contextlib.suppress(BlockingIOError):
            while self._r.recv(4096):
                pass
