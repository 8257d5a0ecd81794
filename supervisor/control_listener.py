"""factoryd's control socket inside its selector, on the services' connection machinery.

Connections are ipc.service.ControlConnections: every read and write is non-blocking,
so a client that connects and says nothing, sends half a frame, or never reads a large
`logs` reply holds up nothing (it is closed at its deadline), and one that goes away
mid-reply costs a counter. During a supervisor's nested wait (a bounded stop) the
control fds leave the selector: requests stay queued, and a waiting request cannot make
every select return at once.
"""

from __future__ import annotations

import contextlib
import selectors
from collections.abc import Callable

from ipc import control
from ipc.service import ControlConnections

CONTROL = "control"  # the selector data of control fds: (CONTROL, callback)


class SelectorWatcher:
    """ipc.service.FdWatcher over a selectors selector."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector

    def watch(self, fd: int, events: int, callback: Callable[[int], None]) -> None:
        try:
            self.selector.modify(fd, events, (CONTROL, callback))
        except KeyError:
            self.selector.register(fd, events, (CONTROL, callback))

    def unwatch(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)


class ControlListener:
    def __init__(
        self,
        server: control.ControlServer,
        selector: selectors.BaseSelector,
        handler: control.Handler,
    ) -> None:
        self.connections = ControlConnections(server, SelectorWatcher(selector), handler)

    def listen(self, on: bool) -> None:
        """Put the control fds in the selector (on) or take them out (nested waits)."""
        if on:
            self.connections.resume()
        else:
            self.connections.pause()

    @staticmethod
    def dispatch(data: tuple[str, Callable[[int], None]], events: int) -> None:
        """A control fd is ready: run what its connection registered."""
        data[1](events)

    def close_idle(self) -> None:
        """Close connections past their deadline."""
        self.connections.expire()

    def statistics(self) -> dict[str, int]:
        return self.connections.statistics()

    def close(self) -> None:
        self.connections.close()
