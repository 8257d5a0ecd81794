"""factoryd's control socket inside its selector: accept, serve when readable, expire.

A connection's bytes are read as they arrive (never a blocking read) and its request is
answered once the whole frame is in, so a client that connects and says nothing, or
sends half a frame, holds up nothing; it is closed after CONTROL_TIMEOUT_S. During a
supervisor's nested wait (a bounded stop) the control fds leave the selector: requests
stay queued, and a waiting request cannot make every select return at once.
"""

from __future__ import annotations

import selectors
import socket
import time

from ipc import control

CONTROL_TIMEOUT_S = 5.0  # a control client has this long to send its request
MAX_CONTROL_CONNS = 64  # accepted, not yet readable; more wait in the listen backlog


class ControlListener:
    def __init__(self, server: control.ControlServer, selector: selectors.BaseSelector) -> None:
        self.server = server
        self.selector = selector
        # fd -> (conn, deadline, what has arrived so far)
        self._conns: dict[int, tuple[socket.socket, float, control.FrameBuffer]] = {}
        self.listening = True
        selector.register(server.fileno(), selectors.EVENT_READ, "control")

    def listen(self, on: bool) -> None:
        """Put the control fds in the selector (on) or take them out (nested waits)."""
        if on == self.listening:
            return
        self.listening = on
        if on:
            self.selector.register(self.server.fileno(), selectors.EVENT_READ, "control")
            renewed = time.monotonic() + CONTROL_TIMEOUT_S  # the wait was ours, not theirs
            for fd, (conn, _, buf) in list(self._conns.items()):
                self._conns[fd] = (conn, renewed, buf)
                self.selector.register(conn, selectors.EVENT_READ, "control_conn")
        else:
            self.selector.unregister(self.server.fileno())
            for conn, _, _ in self._conns.values():
                self.selector.unregister(conn)

    def accept(self) -> None:
        """Take pending connections (the listening socket was readable)."""
        while len(self._conns) < MAX_CONTROL_CONNS:
            conn = self.server.accept_nowait()
            if conn is None:
                return
            conn.setblocking(False)
            deadline = time.monotonic() + CONTROL_TIMEOUT_S
            self._conns[conn.fileno()] = (conn, deadline, control.FrameBuffer())
            self.selector.register(conn, selectors.EVENT_READ, "control_conn")

    def serve(self, fd: int, handler: control.Handler) -> None:
        """Read what arrived on connection `fd`; answer once the request is whole."""
        conn, deadline, buf = self._conns[fd]
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            complete = buf.feed(data) if data else False
        except control.ProtocolError as exc:
            self._drop(fd)
            with conn:
                self.server.refuse(conn, exc, deadline=time.monotonic() + 1.0)
            return
        if not data:  # the client went away before its request was whole
            self._drop(fd)
            conn.close()
            self.server.refused += 1
            return
        if complete:
            self._drop(fd)
            with conn:
                reply_by = max(deadline, time.monotonic() + 1.0)
                self.server.answer(conn, buf.value, handler, deadline=reply_by)

    def _drop(self, fd: int) -> None:
        conn, _, _ = self._conns.pop(fd)
        self.selector.unregister(conn)

    def close_idle(self, *, everyone: bool = False) -> None:
        """Close connections past their deadline (all of them with `everyone`)."""
        if not (self.listening or everyone):
            return  # in a nested wait the clients are waiting on us
        now = time.monotonic()
        for fd, (conn, deadline, _) in list(self._conns.items()):
            if everyone or now >= deadline:
                del self._conns[fd]
                if self.listening:
                    self.selector.unregister(conn)
                conn.close()

    def close(self) -> None:
        self.listen(False)
        self.close_idle(everyone=True)
        self.server.close()
