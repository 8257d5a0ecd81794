"""Control connections served from an event loop: non-blocking, bounded, per connection.

One request per connection (ipc.control's framing). Every read and write is
non-blocking and driven by the loop's poller, so a client that connects and says
nothing, sends half a frame, or never reads its (large) reply holds up nobody: it is
closed at its deadline. A client that goes away mid-reply costs one counter.

    conns = ControlConnections(server, watcher, handler)
    ... the loop calls the callbacks it registered through `watcher`,
    ... and `expire()` at least by `next_deadline()`.

`handler(command, args)` returns the result, raises RequestRefused (an error reply of
its type), or returns a Deferred whose value (or exception) is replied once it is done.
Limits: at most `max_conns` accepted connections (the rest wait in the listen
backlog), `request_timeout_s` to send a whole request, `reply_timeout_s` to take the
reply, and at most `max_reply_backlog_bytes` of unread replies in all (past that a reply
becomes a `busy` error, so slow readers cannot make the process grow without bound).
"""

from __future__ import annotations

import errno
import functools
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ipc import control
from ipc.service._deferred import Deferred

READ = 1  # == selectors.EVENT_READ == zmq.POLLIN
WRITE = 2  # == selectors.EVENT_WRITE == zmq.POLLOUT

MAX_CONNS = 256
REQUEST_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 10.0
MAX_REPLY_BACKLOG_BYTES = 64 * 1024 * 1024

Handler = Callable[[str, dict[str, Any]], Any]


class FdWatcher(Protocol):
    """What the connections need from a loop: call `callback(events)` when `fd` is ready
    for any of `events` (READ | WRITE); `watch` again changes the events."""

    def watch(self, fd: int, events: int, callback: Callable[[int], None]) -> None: ...

    def unwatch(self, fd: int) -> None: ...


def unknown_command(command: str, known: list[str]) -> control.RequestRefused:
    """The one answer every process gives to a command it does not have."""
    return control.RequestRefused(
        f"unknown command {command!r} (known: {', '.join(sorted(known))})", "unknown_command"
    )


class BadRequest(control.RequestRefused):
    """A command's arguments are wrong; the message names the argument and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "bad_request")


def reply_of(call: Callable[[], Any]) -> dict[str, Any]:
    """Run a handler and make its outcome a reply: a result, a refusal of its type, or
    (a bug of ours) an `internal` error naming the exception, never a crash."""
    try:
        return {"ok": True, "result": call()}
    except control.RequestRefused as exc:
        return control.error_reply(exc.type, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad request must not end the service
        where = traceback.extract_tb(exc.__traceback__)[-1]
        detail = f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
        return control.error_reply("internal", detail)


def _hung_up(sock: socket.socket) -> bool:
    """The peer closed its end (EOF, or reset): nobody waits for the reply."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # still there, saying nothing more: waiting for the reply
    except OSError:
        return True


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float
    frame: control.FrameBuffer = field(default_factory=control.FrameBuffer)
    out: memoryview | None = None  # the reply still to send
    waiting: bool = False  # for a Deferred, or for the end of a nested wait
    pending: tuple[str, dict[str, Any]] | None = None  # a request held by a nested wait


class ControlConnections:
    def __init__(
        self,
        server: control.ControlServer,
        watcher: FdWatcher,
        handler: Handler,
        *,
        max_conns: int = MAX_CONNS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
        max_reply_backlog_bytes: int = MAX_REPLY_BACKLOG_BYTES,
    ) -> None:
        self.server = server
        self.watcher = watcher
        self.handler = handler
        self.max_conns = max_conns
        self.request_timeout_s = request_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.max_reply_backlog_bytes = max_reply_backlog_bytes
        self._conns: dict[int, _Conn] = {}
        self._backlog_bytes = 0
        self.paused = False
        self._nested: Callable[[str], bool] | None = None  # what a nested wait answers
        self._accepting = False
        self.served = 0  # replies sent whole
        self.refused = 0  # malformed requests, and clients that sent no whole request
        self.abandoned = 0  # replies the client did not take
        self.busy = 0  # replies turned into `busy` errors by the backlog bound
        self._accept(True)

    # ------------------------------------------------------------------ loop side

    def pause(self, serve: Callable[[str], bool] | None = None) -> None:
        """A nested wait. Without `serve`: every fd leaves the loop and requests stay
        queued. With it: the commands `serve` allows (ones that only read, or only
        signal) are still answered, and any other is read, held, and handled at
        `resume()`, so a long wait (a child's start) never leaves a client without an
        answer to `status`."""
        if serve is not None:
            if not self.paused:
                self._nested = serve
            return
        if self.paused:
            return
        self.paused = True
        self._accept(False)
        for fd in self._conns:
            self.watcher.unwatch(fd)

    def resume(self) -> None:
        self._nested = None
        held = [(fd, c) for fd, c in self._conns.items() if c.pending is not None]
        for fd, conn in held:  # what a nested wait held, in arrival order
            if self._conns.get(fd) is not conn or conn.pending is None:
                continue
            (command, args), conn.pending, conn.waiting = conn.pending, None, False
            if _hung_up(conn.sock):  # its client gave up (timed out, or died) meanwhile:
                self.abandoned += 1  # a start it no longer waits for is not carried out,
                self._close(fd)  # or it would run twice when the client asks again
                continue
            self._handle(fd, conn, command, args)
        self._nested = None  # a handler's own nested wait set it again
        if not self.paused:
            return
        self.paused = False
        renewed = time.monotonic() + self.request_timeout_s  # the wait was ours
        for fd, conn in self._conns.items():
            conn.deadline = max(conn.deadline, renewed)
            self._watch(fd, conn)
        self._accept(len(self._conns) < self.max_conns)

    def next_deadline(self) -> float:
        """When `expire` must run next (inf: no connection is open)."""
        live = [c.deadline for c in self._conns.values() if not c.waiting]
        return min(live, default=float("inf"))

    def expire(self, now: float | None = None) -> None:
        """Close connections past their deadline: a silent client, a reader too slow."""
        if self.paused or self._nested is not None:
            return  # in a nested wait the clients are waiting on us
        now = time.monotonic() if now is None else now
        for fd, conn in list(self._conns.items()):
            if not conn.waiting and now >= conn.deadline:
                if conn.out is None:
                    self.refused += 1
                else:
                    self.abandoned += 1
                self._close(fd)

    def close(self) -> None:
        """Close every connection and the listening socket."""
        self.pause()
        for fd in list(self._conns):
            self._close(fd, unwatch=False)
        self.server.close()

    def statistics(self) -> dict[str, int]:
        return {
            "open": len(self._conns),
            "served": self.served,
            "refused": self.refused + self.server.refused,
            "abandoned": self.abandoned,
            "busy": self.busy,
            "dropped": self.server.dropped,
            "reply_backlog_bytes": self._backlog_bytes,
        }

    # ------------------------------------------------------------------ internals

    def _accept(self, on: bool) -> None:
        if on == self._accepting:
            return
        self._accepting = on
        if on:
            self.watcher.watch(self.server.fileno(), READ, self._on_listener)
        else:
            self.watcher.unwatch(self.server.fileno())

    def _on_listener(self, _events: int) -> None:
        while len(self._conns) < self.max_conns:
            sock = self.server.accept_nowait()
            if sock is None:
                return
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + self.request_timeout_s)
            self._conns[sock.fileno()] = conn
            self._watch(sock.fileno(), conn)
        self._accept(False)  # full: the rest wait in the backlog until one closes

    def _watch(self, fd: int, conn: _Conn) -> None:
        if conn.waiting:
            return
        events = READ if conn.out is None else WRITE
        self.watcher.watch(fd, events, functools.partial(self._on_conn, fd))

    def _on_conn(self, fd: int, events: int) -> None:
        conn = self._conns.get(fd)
        if conn is None:
            return
        if conn.out is not None:
            self._send(fd, conn)
        elif events & READ:
            self._receive(fd, conn)

    def _receive(self, fd: int, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # gone before its request was whole
            self.refused += 1
            self._close(fd)
            return
        try:
            complete = conn.frame.feed(data)
        except control.ProtocolError as exc:
            self.refused += 1
            self._start_reply(fd, conn, control.error_reply("protocol", str(exc)))
            return
        if not complete:
            return
        try:
            command, args = control.parse_request(conn.frame.value)
        except control.ProtocolError as exc:
            self.refused += 1
            self._start_reply(fd, conn, control.error_reply("protocol", str(exc)))
            return
        if self._nested is not None and not self._nested(command):
            conn.pending, conn.waiting = (command, args), True  # answered at resume()
            self.watcher.unwatch(fd)
            return
        self._handle(fd, conn, command, args)

    def _handle(self, fd: int, conn: _Conn, command: str, args: dict[str, Any]) -> None:
        outcome: list[Any] = []
        reply = reply_of(lambda: outcome.append(self.handler(command, args)))
        if reply["ok"] and isinstance(outcome[0], Deferred):
            conn.waiting = True
            self.watcher.unwatch(fd)
            outcome[0].add_done_callback(lambda d: self._deferred_done(fd, conn, d))
            return
        if reply["ok"]:
            reply["result"] = outcome[0]
        self._start_reply(fd, conn, reply)

    def _deferred_done(self, fd: int, conn: _Conn, deferred: Deferred) -> None:
        if self._conns.get(fd) is not conn:
            return  # closed meanwhile (shutdown)
        conn.waiting = False
        self._start_reply(fd, conn, reply_of(deferred.result))

    def _start_reply(self, fd: int, conn: _Conn, reply: dict[str, Any]) -> None:
        try:
            body = orjson.dumps(reply)
        except TypeError as exc:
            body = orjson.dumps(control.error_reply("internal", f"reply not JSON: {exc}"))
        if len(body) > control.MAX_FRAME_BYTES:
            message = f"reply of {len(body)} bytes exceeds {control.MAX_FRAME_BYTES}"
            body = orjson.dumps(control.error_reply("too_large", message))
        if self._backlog_bytes + len(body) > self.max_reply_backlog_bytes:
            self.busy += 1
            pending = self._backlog_bytes
            message = f"busy: {pending} bytes of replies wait for slow readers; ask again"
            body = orjson.dumps(control.error_reply("busy", message))
        conn.out = memoryview(control.frame_header(len(body)) + body)
        self._backlog_bytes += len(conn.out)
        conn.deadline = time.monotonic() + self.reply_timeout_s
        self._send(fd, conn)
        if fd in self._conns and not self.paused:
            self._watch(fd, conn)

    def _send(self, fd: int, conn: _Conn) -> None:
        assert conn.out is not None
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return
            self.abandoned += 1  # EPIPE, ECONNRESET: the client went away
            self._close(fd)
            return
        self._backlog_bytes -= sent
        conn.out = conn.out[sent:]
        if not conn.out:
            self.served += 1
            self._close(fd)

    def _close(self, fd: int, *, unwatch: bool = True) -> None:
        conn = self._conns.pop(fd)
        if conn.out is not None:
            self._backlog_bytes -= len(conn.out)
        if unwatch and not self.paused and not conn.waiting:
            self.watcher.unwatch(fd)
        conn.sock.close()
        if not self.paused:
            self._accept(len(self._conns) < self.max_conns)
