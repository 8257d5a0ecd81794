"""factoryd's control socket inside its selector, on the services' connection machinery.

Connections are ipc.service.ControlConnections: every read and write is non-blocking,
so a client that connects and says nothing, sends half a frame, or never reads a large
`logs` reply holds up nothing (it is closed at its deadline), and one that goes away
mid-reply costs a counter. During a supervisor's nested wait (a child's start until
READY=1, a bounded stop) `status`, `logs`, `kill` and `shutdown` are still answered; any
other request is read and held until the wait is over (a start inside a start would
change the tree under the one waiting), and a held request cannot make every select
return at once.
"""

from __future__ import annotations

import contextlib
import selectors
from collections.abc import Callable

from ipc import control
from ipc.service import ControlConnections

CONTROL = "control"  # the selector data of control fds: (CONTROL, callback)
# Answered even inside a nested wait: they read the tree or its logs, signal a process
# without waiting, or ask for a stop (a flag the waits check); none changes the tree.
NESTED_COMMANDS = frozenset({"status", "logs", "kill", "shutdown"})


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
        """Serve every command (on), or in a nested wait (a child's start, a bounded
        stop) only NESTED_COMMANDS: the others are held until the wait is over."""
        if on:
            self.connections.resume()
        else:
            self.connections.pause(serve=NESTED_COMMANDS.__contains__)

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
