"""Control protocol: request/reply over a local stream socket only its owner can use.

Used by factoryctl to talk to factoryd, and by services that answer operator queries
(`<runtime_dir>/<service>.sock`). One request per connection, both ways a frame:

    frame   = 4-byte big-endian length + orjson object (at most MAX_FRAME_BYTES)
    request = {"command": str, "args": {...}}
    reply   = {"ok": true, "result": ...} | {"ok": false, "error": {"type": str, "message": str}}

The socket file is created 0600 and every peer's uid is checked (SO_PEERCRED), so only
the daemon's owner (or root) can send commands. Every call here is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

MAX_FRAME_BYTES = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")

Handler = Callable[[str, dict[str, Any]], Any]


class Caller(Protocol):
    """`call`'s shape, for code that takes it as a parameter (a test passes its own)."""

    def __call__(
        self,
        path: str | os.PathLike[str],
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float,
    ) -> Any: ...


class ControlError(Exception):
    """A control call failed; `message` says why in words an operator can act on."""


class DaemonNotRunning(ControlError):
    """Nothing listens on the control socket (no file, or connection refused)."""


class ControlTimeout(ControlError):
    """The peer did not answer within the timeout."""


class ControlBusy(ControlTimeout):
    """The peer's listen backlog stayed full until the timeout: it is busy, not gone."""


class ProtocolError(ControlError):
    """A frame was malformed: bad length, not JSON, or not the expected shape."""


class PeerGone(ProtocolError):
    """The peer closed or reset the connection before a whole frame went across."""


class RemoteError(ControlError):
    """The peer answered with an error reply."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_


class RequestRefused(Exception):
    """Raised by a handler to answer with an error reply of a given type."""

    def __init__(self, message: str, type_: str = "refused") -> None:
        super().__init__(message)
        self.type = type_


def frame_header(length: int) -> bytes:
    """The 4-byte length prefix of a frame whose body is `length` bytes."""
    return _HEADER.pack(length)


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ControlTimeout(f"timed out reading {n} bytes")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(n - len(chunks))
        except TimeoutError as exc:
            raise ControlTimeout(f"timed out reading {n} bytes") from exc
        except ConnectionResetError:  # the peer closed it unread (e.g. out of descriptors)
            chunk = b""
        if not chunk:
            raise PeerGone(f"connection closed after {len(chunks)} of {n} bytes")
        chunks += chunk
    return bytes(chunks)


def send_frame(sock: socket.socket, obj: Any, *, deadline: float) -> None:
    """Write one frame; raises ControlTimeout past `deadline` (monotonic)."""
    body = orjson.dumps(obj)
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ControlTimeout("timed out before sending")
    sock.settimeout(remaining)
    try:
        sock.sendall(_HEADER.pack(len(body)) + body)
    except TimeoutError as exc:
        raise ControlTimeout("timed out sending") from exc
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise PeerGone(f"connection closed while sending: {exc}") from None


def recv_frame(sock: socket.socket, *, deadline: float) -> Any:
    """Read one frame and decode it; raises ProtocolError on a bad frame."""
    (length,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame length {length} exceeds {MAX_FRAME_BYTES}")
    body = _recv_exact(sock, length, deadline)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc


class FrameBuffer:
    """Incremental reading of one frame for an event loop: `feed` what arrived and
    learn whether the frame is whole; `value` is its decoded object then."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.value: Any = None

    def feed(self, data: bytes) -> bool:
        """Add bytes; True once the frame is complete. Raises ProtocolError on a bad
        length or a body that is not JSON."""
        self._buf += data
        if len(self._buf) < _HEADER.size:
            return False
        (length,) = _HEADER.unpack_from(self._buf)
        if length > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame length {length} exceeds {MAX_FRAME_BYTES}")
        if len(self._buf) < _HEADER.size + length:
            return False
        try:
            self.value = orjson.loads(bytes(self._buf[_HEADER.size : _HEADER.size + length]))
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"frame is not JSON: {exc}") from None
        return True


def call(
    path: str | os.PathLike[str],
    command: str,
    args: dict[str, Any] | None = None,
    *,
    timeout: float,
) -> Any:
    """Send one request and return the reply's result.

    Blocks at most `timeout` seconds. A peer whose listen backlog is full is busy, not
    gone: the connect is retried until the timeout (commands queue). Raises
    DaemonNotRunning when nothing listens, ControlBusy when the backlog stayed full,
    ControlTimeout, ProtocolError, or RemoteError carrying the peer's error.
    """
    deadline = time.monotonic() + timeout
    sock = connect(path, deadline=deadline)
    try:
        send_frame(sock, {"command": command, "args": args or {}}, deadline=deadline)
        reply = recv_frame(sock, deadline=deadline)
    finally:
        sock.close()
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ProtocolError(f"reply is not a control reply: {reply!r:.200}")
    if reply["ok"]:
        return reply.get("result")
    error = reply.get("error") or {}
    raise RemoteError(str(error.get("type", "error")), str(error.get("message", "")))


def await_answer(path: str | os.PathLike[str], *, timeout: float) -> None:
    """Return once something answers on the control socket `path` (any reply, an error
    reply included: it listens). For a peer that may be restarting: a supervised service
    SIGKILLed a moment ago is back within seconds, and a caller that took "nothing is
    listening" for "absent" gave up what it came for (bench/chaos.py). Blocks at most
    about `timeout` seconds, retrying with a backoff from 50 ms to 1 s; then raises the
    last ControlError (DaemonNotRunning when nothing listens)."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        try:
            call(path, "status", {}, timeout=max(deadline - time.monotonic(), 0.1))
            return
        except RemoteError:
            return  # an error reply is an answer: it listens
        except ControlError:
            if time.monotonic() + pause >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def connect(path: str | os.PathLike[str], *, deadline: float) -> socket.socket:
    """A stream socket connected to the control socket at `path`.

    A full listen backlog makes an AF_UNIX connect fail at once with EAGAIN (the
    socket has a timeout, so it is non-blocking underneath): that is retried on a fresh
    socket, backing off from 1 ms to 50 ms, until `deadline` (monotonic). Raises
    DaemonNotRunning, ControlBusy (backlog still full at the deadline), ControlTimeout
    or ControlError naming the path.
    """
    name = Path(path).stem
    pause = 0.001
    while True:
        remaining = deadline - time.monotonic()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(remaining, 0.001))
            sock.connect(os.fspath(path))
        except BlockingIOError as exc:  # EAGAIN: the backlog is full
            sock.close()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlBusy(
                    f"{name} is busy: its control socket's backlog is full ({path}); "
                    "no connection was taken before the timeout"
                ) from exc
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)
            continue
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            raise DaemonNotRunning(f"nothing is listening on {path}") from exc
        except TimeoutError as exc:
            sock.close()
            raise ControlTimeout(f"timed out connecting to {path}") from exc
        except OSError as exc:  # permission denied, path too long for AF_UNIX, ...
            sock.close()
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from exc
        return sock


def parse_request(obj: Any) -> tuple[str, dict[str, Any]]:
    """Check a decoded request's shape; raises ProtocolError naming what is wrong."""
    if not isinstance(obj, dict):
        raise ProtocolError("request must be a JSON object")
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        raise ProtocolError("request.command must be a non-empty string")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("request.args must be an object")
    return command, args


def error_reply(type_: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type_, "message": message}}


class ControlServer:
    """A listening control socket: 0600 file, peer uid checked, one request per connection.

    Connections are served by ipc.service.ControlConnections (non-blocking, bounded)
    from the owner's loop: `fileno()` for its poller, `accept_nowait()` when readable.
    The socket file is removed on `close()`.
    """

    def __init__(self, path: str | os.PathLike[str], *, backlog: int = 64) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            if self._someone_listens():
                raise ControlError(f"another process already listens on {self.path}")
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self._sock.bind(os.fspath(self.path))
        finally:
            os.umask(old_umask)
        self._sock.listen(backlog)
        self._sock.setblocking(False)
        self.refused = 0  # peers of another uid
        self.dropped = 0  # connections closed unserved: no file descriptor was left
        # One fd held in reserve: out of descriptors, accept() fails and the listening
        # socket stays readable for ever (a busy loop); freeing this one lets us take the
        # connection and close it, so the caller hears "closed" and we go on.
        self._spare: int | None = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def _someone_listens(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise
        finally:
            probe.close()
        return True

    def fileno(self) -> int:
        return self._sock.fileno()

    def accept_nowait(self) -> socket.socket | None:
        """Accept a pending connection from the owner, or return None when none waits."""
        try:
            conn, _ = self._sock.accept()
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self._drop_one()
            return None
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid not in (os.getuid(), 0):
            self.refused += 1
            conn.close()
            return None
        return conn

    def statistics(self) -> dict[str, int]:
        return {"refused": self.refused, "dropped": self.dropped}

    def _drop_one(self) -> None:
        """Out of descriptors: spend the spare on the waiting connection, close it."""
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        with contextlib.suppress(OSError):
            conn, _ = self._sock.accept()
            conn.close()
            self.dropped += 1
        with contextlib.suppress(OSError):  # back in reserve, if a descriptor is free
            self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        self._sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
