"""A byte relay between stream sockets, and the sandboxed agent's one way out. Stdlib only.

A sandboxed agent (procs.agent.agent_sandbox) runs in a network namespace of its own
(bwrap --unshare-net): loopback only, nothing of the host's. Its model config still names
http://127.0.0.1:PORT (the gateway's port), so inside the sandbox this script, run as

    python3 -I net_relay.py --listen 127.0.0.1:PORT --unix /tmp/.factory-model/model.sock \
        [--idle-s 900] [--term-grace-s 10] -- AGENT COMMAND...

listens on that address, relays each connection to the unix socket bound in from the
host (procs.agent.model_bridge relays it on to the model's TCP port there), and starts
the agent as its child: same process group, same stdin/stdout/stderr (the ACP pipe
passes untouched; the relay lets go of its own stdin and stdout), killed if the relay
dies (PR_SET_PDEATHSIG). SIGTERM, SIGINT and SIGHUP are passed on to the agent, which
gets --term-grace-s to exit before SIGKILL (a signal to the whole group reaches the
agent twice, from the sender and from the relay, a moment apart). The relay exits with
the agent's status (128 + N when a signal N killed it). Bad input exits 2 before the
agent starts, naming what was wrong (the unix socket missing, a bad or taken address);
an agent that cannot be started exits 127.

Relay (also used by model_bridge on a thread): one thread, a selector, non-blocking
sockets. Each direction of a connection holds at most BUFFER_BYTES: a side that does not
read stops the other side's reading (backpressure, no unbounded buffer). One side's EOF
becomes a shutdown(SHUT_WR) of the other once its bytes are through, so a streamed (SSE)
answer flows chunk by chunk and ends when the server ends it; an error on either side
resets both. A connection silent both ways for `idle_s`, or whose target does not accept
within CONNECT_S, is closed; at most `max_connections` at once (more are reset).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import math
import os
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

BUFFER_BYTES = 64 * 1024
IDLE_S = 900.0
CONNECT_S = 10.0
TICK_S = 1.0  # how often timeouts are checked (a select never waits longer)
MAX_CONNECTIONS = 256
TERM_GRACE_S = 10.0
EXIT_USAGE = 2
EXIT_NO_AGENT = 127
_PR_SET_PDEATHSIG = 1
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN

Address = tuple[int, Any]  # (socket family, its sockaddr)
Callback = Callable[[int], None]


class BadAddress(ValueError):
    """An address that is not HOST:PORT, [V6]:PORT or unix:/PATH; the message says why."""


def parse_address(text: str) -> Address:
    """'127.0.0.1:8080', '[::1]:8080' or 'unix:/abs/path' as (family, sockaddr)."""
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        if not path.startswith("/"):
            raise BadAddress(f"unix socket path must be absolute, got {text!r}")
        return socket.AF_UNIX, path
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise BadAddress(f"address must be HOST:PORT or unix:/PATH, got {text!r}")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host, family = host[1:-1], socket.AF_INET6
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadAddress(f"port must be 1-65535, got {port_text!r} in {text!r}")
    try:
        socket.inet_pton(family, host)
    except OSError:
        raise BadAddress(f"host must be an IP address, got {host!r} in {text!r}") from None
    return family, (host, int(port_text))


def listen(address: Address, backlog: int = 128) -> socket.socket:
    """A non-blocking listening socket on `address`. Raises OSError (taken, not allowed)."""
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Direction:
    """Bytes from `src` to `dst`, at most BUFFER_BYTES held."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.buffer = bytearray()
        self.eof = False  # src said EOF
        self.shut = False  # and dst was told (shutdown SHUT_WR) once the buffer drained
        self.bytes = 0

    def wants_read(self) -> bool:
        return not self.eof and len(self.buffer) < BUFFER_BYTES

    def has_output(self) -> bool:
        """Bytes to send, or the EOF to pass on."""
        return bool(self.buffer) or (self.eof and not self.shut)

    def read(self) -> None:
        chunk = self.src.recv(BUFFER_BYTES - len(self.buffer))
        if chunk:
            self.buffer += chunk
            self.bytes += len(chunk)
        else:
            self.eof = True

    def write(self) -> None:
        if self.buffer:
            try:
                sent = self.dst.send(self.buffer)
            except BlockingIOError:
                return
            del self.buffer[:sent]
        if self.eof and not self.buffer and not self.shut:
            self.shut = True
            with contextlib.suppress(OSError):  # the peer may be gone already
                self.dst.shutdown(socket.SHUT_WR)


class _Connection:
    """A client and its upstream: two directions; done when both are shut."""

    def __init__(self, client: socket.socket, upstream: socket.socket, now: float) -> None:
        self.client, self.upstream = client, upstream
        self.up = _Direction(client, upstream)
        self.down = _Direction(upstream, client)
        self.connected = False
        self.started = self.active = now
        self.closed = False

    def interest(self, sock: socket.socket) -> int:
        if not self.connected:
            return selectors.EVENT_WRITE if sock is self.upstream else 0
        events = 0
        for direction in (self.up, self.down):
            if direction.src is sock and direction.wants_read():
                events |= selectors.EVENT_READ
            if direction.dst is sock and direction.has_output():
                events |= selectors.EVENT_WRITE
        return events

    @property
    def done(self) -> bool:
        return self.up.shut and self.down.shut


class Relay:
    """Accept on `listeners`, relay each connection to `target` (see the module docstring).

    `log(text)` gets one line per failure kind worth telling (the first failed connect to
    the target, then every 100th). `add_reader(fd, callback)` watches other fds (a pidfd,
    a wakeup pipe) in the same loop. Not thread-safe: one thread runs `run()`; another may
    only make `stop()`'s predicate true and wake it through an fd it added.
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        target: Address,
        *,
        idle_s: float = IDLE_S,
        max_connections: int = MAX_CONNECTIONS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not idle_s > 0:
            raise ValueError(f"idle_s must be > 0, got {idle_s!r}")
        self.target = target
        self.idle_s = idle_s
        self.max_connections = max_connections
        self.log = log or (lambda _text: None)
        self.listeners = list(listeners)
        self.selector = selectors.DefaultSelector()
        self.connections: set[_Connection] = set()
        self.counts = dict.fromkeys(("accepted", "refused", "connect_failed", "timed_out",
                                     "reset", "bytes_up", "bytes_down"), 0)  # fmt: skip
        for listener in self.listeners:
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ, self._on_listener)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self.selector.register(fd, selectors.EVENT_READ, lambda _mask: callback(fd))

    def run(self, *, stop: Callable[[], bool], wake_at: Callable[[], float] | None = None) -> None:
        """Relay until `stop()` is true: checked after every event, every TICK_S and at
        `wake_at()` (a monotonic deadline of the caller's)."""
        while not stop():
            timeout = TICK_S
            if wake_at is not None:
                timeout = min(timeout, max(0.0, wake_at() - time.monotonic()))
            for key, mask in self.selector.select(timeout=timeout):
                key.data(mask)
            self._sweep(time.monotonic())

    def close(self) -> None:
        """Reset every connection, close the listeners and the selector."""
        for connection in list(self.connections):
            self._drop(connection, reset=True)
        for listener in self.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(listener)
            listener.close()
        self.selector.close()

    def statistics(self) -> dict[str, int]:
        """Counts so far; `active` connections and the bytes they hold right now."""
        live = list(self.connections)
        held = sum(len(c.up.buffer) + len(c.down.buffer) for c in live)
        return {**self.counts, "active": len(live), "buffered_bytes": held}

    def _on_listener(self, _mask: int) -> None:
        for listener in self.listeners:
            for _ in range(64):  # a burst, without starving the connections
                try:
                    client, _peer = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # EMFILE and kin: the client stays in the backlog
                    self.log(f"accept failed: {exc}")
                    break
                self._start(client)

    def _start(self, client: socket.socket) -> None:
        client.setblocking(False)
        if len(self.connections) >= self.max_connections:
            self.counts["refused"] += 1
            _reset(client)
            return
        self.counts["accepted"] += 1
        _no_delay(client)
        family, sockaddr = self.target
        upstream = socket.socket(family, socket.SOCK_STREAM)
        upstream.setblocking(False)
        code = upstream.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS):
            upstream.close()
            self._connect_failed(os.strerror(code))
            _reset(client)
            return
        _no_delay(upstream)
        connection = _Connection(client, upstream, time.monotonic())
        connection.connected = code == 0
        self.connections.add(connection)
        self._update(connection)

    def _on_event(self, connection: _Connection, sock: socket.socket, _mask: int) -> None:
        if connection.closed:
            return
        connection.active = time.monotonic()
        try:
            if not connection.connected:
                if sock is not connection.upstream:
                    return  # the client's bytes wait for the connect
                code = connection.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    self._connect_failed(os.strerror(code))
                    self._drop(connection, reset=True)
                    return
                connection.connected = True
            # Both directions are tried: the sockets are non-blocking, and a read that
            # finds nothing raises BlockingIOError.
            for direction in (connection.up, connection.down):
                if direction.wants_read():
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        direction.read()
                direction.write()
        except OSError:  # a reset, a broken pipe: the other side is reset too
            self.counts["reset"] += 1
            self._drop(connection, reset=True)
            return
        if connection.done:
            self._drop(connection, reset=False)
        else:
            self._update(connection)

    def _update(self, connection: _Connection) -> None:
        """Register each socket for what it waits for; one that waits for nothing is
        unregistered (a socket at EOF would otherwise read as ready forever)."""
        for sock in (connection.client, connection.upstream):
            events = connection.interest(sock)
            try:
                key = self.selector.get_key(sock)
            except KeyError:
                key = None
            if events == 0:
                if key is not None:
                    self.selector.unregister(sock)
            elif key is None:
                self.selector.register(sock, events, self._handler(connection, sock))
            elif key.events != events:
                self.selector.modify(sock, events, key.data)

    def _handler(self, connection: _Connection, sock: socket.socket) -> Callable[[int], None]:
        return lambda mask: self._on_event(connection, sock, mask)

    def _sweep(self, now: float) -> None:
        for connection in list(self.connections):
            limit = self.idle_s if connection.connected else CONNECT_S
            if now - connection.active > limit:
                self.counts["timed_out"] += 1
                if not connection.connected:
                    self._connect_failed(f"no answer in {CONNECT_S} s")
                self._drop(connection, reset=True)

    def _drop(self, connection: _Connection, *, reset: bool) -> None:
        connection.closed = True
        self.connections.discard(connection)
        self.counts["bytes_up"] += connection.up.bytes
        self.counts["bytes_down"] += connection.down.bytes
        for sock in (connection.client, connection.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()

    def _connect_failed(self, why: str) -> None:
        self.counts["connect_failed"] += 1
        if self.counts["connect_failed"] % 100 == 1:
            where = self.target[1]
            self.log(f"cannot reach {where}: {why} ({self.counts['connect_failed']} so far)")


def _no_delay(sock: socket.socket) -> None:
    if sock.family != socket.AF_UNIX:  # small SSE chunks go out at once
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    sock.close()


def _die_with(parent: int) -> Callable[[], None]:
    """For the agent, before exec: SIGKILL when the relay dies (whatever kills it); if it
    died before the prctl took, exit at once."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(EXIT_NO_AGENT)

    return preexec


def _log(text: str) -> None:
    sys.stderr.write(f"net_relay: {text}\n")
    sys.stderr.flush()


def _check_socket(path: str) -> str | None:
    """Why `path` cannot be the relay's target (None: it is a unix socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"the model's unix socket {path} cannot be reached: {exc.strerror}"
    if not stat.S_ISSOCK(mode):
        return f"{path} is not a unix socket"
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="net_relay", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", action="append", required=True,
                        help="HOST:PORT or [V6]:PORT to accept on (repeatable)")  # fmt: skip
    parser.add_argument("--unix", required=True, help="the unix socket to relay to")
    parser.add_argument("--idle-s", type=float, default=IDLE_S)
    parser.add_argument("--term-grace-s", type=float, default=TERM_GRACE_S)
    parser.add_argument("command", nargs="+", help="the agent command, after --")
    return parser


def main(argv: Sequence[str]) -> int:
    """Relay while the agent runs; its exit status (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (why := _check_socket(args.unix)) is not None:
        _log(why)
        return EXIT_USAGE
    listeners: list[socket.socket] = []
    try:
        for text in args.listen:
            address = parse_address(text)
            if address[0] == socket.AF_UNIX:
                raise BadAddress(f"--listen takes a TCP address, got {text!r}")
            try:
                listeners.append(listen(address))
            except OSError as exc:
                raise BadAddress(f"cannot listen on {text}: {exc.strerror or exc}") from None
        relay = Relay(listeners, (socket.AF_UNIX, args.unix), idle_s=args.idle_s, log=_log)
    except ValueError as exc:  # BadAddress too
        for listener in listeners:
            listener.close()
        _log(str(exc))
        return EXIT_USAGE
    return _serve_agent(relay, args.command, args.term_grace_s)


def _serve_agent(relay: Relay, command: Sequence[str], term_grace_s: float) -> int:
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for sig in forwarded:  # a Python handler, so that the wakeup fd gets the number
        signal.signal(sig, lambda _n, _f: None)
    try:
        # one thread here: preexec_fn is safe
        agent = subprocess.Popen(list(command), preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509
    except OSError as exc:
        _log(f"cannot start the agent {command[0]!r}: {exc}")
        relay.close()
        return EXIT_NO_AGENT
    _let_go_of_stdio()
    state: dict[str, float] = {}

    def on_signal(fd: int) -> None:
        while True:
            try:
                numbers = os.read(fd, 64)
            except BlockingIOError:
                return
            if not numbers:
                return
            for number in numbers:
                with contextlib.suppress(ProcessLookupError):
                    agent.send_signal(number)
                state.setdefault("kill_at", time.monotonic() + term_grace_s)

    pidfd = os.pidfd_open(agent.pid)
    relay.add_reader(wake_r, on_signal)
    relay.add_reader(pidfd, lambda _fd: state.update(exited=1.0))
    on_signal(wake_r)  # a signal that came before the agent existed

    def stop() -> bool:
        if "kill_at" in state and time.monotonic() >= state["kill_at"]:
            with contextlib.suppress(ProcessLookupError):
                agent.kill()
            state["kill_at"] = math.inf
        return "exited" in state

    try:
        relay.run(stop=stop, wake_at=lambda: state.get("kill_at", math.inf))
        code = agent.wait(timeout=5.0)  # it has exited: this reaps it
    finally:
        relay.close()
        os.close(pidfd)
    return code if code >= 0 else 128 - code


def _let_go_of_stdio() -> None:
    """The agent owns the ACP pipe: ours would keep its stdout open after it exits."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    os.close(null)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
