"""The zygote: a clean process that forks every child, started before any thread or socket.

factoryd forks the zygote first thing, so the zygote holds no ZeroMQ context, no
threads and none of the daemon's sockets. Every child is forked from it:

- the child gets its own process group (setpgid in both parent and child, as shells do)
  and PR_SET_PDEATHSIG(SIGKILL), so it dies with the zygote;
- an external command is exec'd; a Python target ("pkg.mod:func") is imported and called
  in the fork (modules listed in `preload` are imported once, in the zygote);
- a close-on-exec error pipe tells exec or import failure from success, so a bad child
  is a failed start, not a crash loop;
- the zygote reaps its children on SIGCHLD and reports each exit to factoryd;
- when factoryd goes away (EOF on the channel, even after SIGKILL) the zygote kills every
  child's process group with SIGKILL, reaps them and exits: nothing is left behind.

Wire: an AF_UNIX SOCK_SEQPACKET pair, one orjson message per packet, the child's log fd
passed with SCM_RIGHTS on "spawn".
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import select
import selectors
import signal
import socket
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from supervisor.spec import Start

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_MAX_PACKET = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class SpawnError(Exception):
    """A child could not be started: exec failed, import failed, or the zygote is gone."""


class ZygoteGone(SpawnError):
    """The zygote process died or closed its channel."""


@dataclass(frozen=True)
class Exit:
    pid: int
    exit_code: int  # os.waitstatus_to_exitcode: negative = killed by that signal


# --------------------------------------------------------------------------- client side


class ZygoteClient:
    """factoryd's handle on the zygote: spawn children, learn of their exits.

    Exits are queued in `exits` as they are read, whatever call reads them; the daemon
    takes them off the queue in order. Every call is bounded by a timeout.
    """

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock = sock
        self.pid = pid
        self.exits: deque[Exit] = deque()
        self.spawned = 0
        self.spawn_failures = 0
        self._seq = 0  # numbers spawn requests, so a late reply is not taken for the next

    @classmethod
    def start(cls, preload: tuple[str, ...] = ()) -> ZygoteClient:
        """Fork the zygote. Call before creating any thread or ZeroMQ context."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the zygote
            code = 1
            try:
                parent_sock.close()
                code = _zygote_main(child_sock, parent_pid, preload)
            finally:
                os._exit(code)
        child_sock.close()
        parent_sock.setblocking(False)
        return cls(parent_sock, pid)

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_nowait(self) -> None:
        """Queue every message waiting on the channel; raises ZygoteGone on EOF."""
        while True:
            try:
                data = self._sock.recv(_MAX_PACKET)
            except BlockingIOError:
                return
            except ConnectionResetError as exc:
                raise ZygoteGone("zygote channel reset") from exc
            if not data:
                raise ZygoteGone("zygote closed its channel")
            self._queue(orjson.loads(data))

    def _queue(self, msg: dict[str, Any], awaiting: int | None = None) -> dict[str, Any] | None:
        if msg.get("op") == "exit":
            self.exits.append(Exit(int(msg["pid"]), int(msg["exit_code"])))
            return None
        if msg.get("seq") != awaiting:  # the reply to a spawn that already timed out
            if msg.get("op") == "spawned":  # nobody tracks that child: end it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(msg["pid"]), signal.SIGKILL)
            return None
        return msg

    def spawn(self, child_id: str, start: Start, log_fd: int, *, timeout: float) -> int:
        """Start one child; return its pid (also its process group id).

        Blocks until the zygote answers: for a command, until exec succeeded; for a
        target, until its module imported. Raises SpawnError with the reason.
        """
        self._seq += 1
        request = {
            "op": "spawn",
            "seq": self._seq,
            "id": child_id,
            "command": list(start.command),
            "target": start.target,
            "args": list(start.args),
            "env": dict(start.env),
            "cwd": start.cwd,
        }
        deadline = time.monotonic() + timeout
        try:
            socket.send_fds(self._sock, [orjson.dumps(request)], [log_fd])
        except OSError as exc:
            raise ZygoteGone(f"cannot reach the zygote: {exc}") from exc
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SpawnError(f"no answer from the zygote within {timeout}s")
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                continue
            try:
                data = self._sock.recv(_MAX_PACKET)
            except BlockingIOError:
                continue
            if not data:
                raise ZygoteGone("zygote closed its channel")
            reply = self._queue(orjson.loads(data), awaiting=self._seq)
            if reply is None:
                continue
            if reply.get("op") == "spawned":
                self.spawned += 1
                return int(reply["pid"])
            self.spawn_failures += 1
            raise SpawnError(str(reply.get("error", "unknown spawn failure")))

    def wait_readable(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._sock], [], [], max(timeout, 0))
        return bool(ready)

    def close(self, *, timeout: float = 5.0) -> None:
        """Ask the zygote to exit and reap it (bounded; SIGKILL past the timeout)."""
        with contextlib.suppress(OSError):
            self._sock.send(orjson.dumps({"op": "quit"}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            with contextlib.suppress(ZygoteGone, OSError):
                self.wait_readable(0.05)
                self.read_nowait()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        self._sock.close()

    def statistics(self) -> dict[str, int]:
        return {"pid": self.pid, "spawned": self.spawned, "spawn_failures": self.spawn_failures}


# --------------------------------------------------------------------------- zygote side


def _zygote_main(sock: socket.socket, parent_pid: int, preload: tuple[str, ...]) -> int:
    # Our own group: a terminal's Ctrl-C goes to factoryd, which stops things in order.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)  # parent died: the loop sees EOF next

    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a bad preload must not stop the zygote
            sys.stderr.write(f"factoryd zygote: cannot preload {name}:\n")
            traceback.print_exc()

    children: set[int] = set()
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in sel.select(timeout=5.0):
                if key.fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    _reap(children, sock)
                    continue
                try:
                    data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_PACKET, 4)
                except ConnectionResetError:
                    data, fds = b"", []
                if not data:
                    return 0  # factoryd is gone
                msg = orjson.loads(data)
                if msg.get("op") == "quit":
                    return 0
                if msg.get("op") == "spawn":
                    _spawn(msg, fds, sock, children, wake_r, wake_w)
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if os.getppid() != parent_pid:
                return 0
    finally:
        _kill_all(children)


def _reap(children: set[int], sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            children.discard(pid)
            msg = {"op": "exit", "pid": pid, "exit_code": os.waitstatus_to_exitcode(status)}
            with contextlib.suppress(OSError):
                sock.send(orjson.dumps(msg))


def _kill_all(children: set[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        children.discard(pid)


def _spawn(  # noqa: PLR0917 - one call site, all state of the zygote loop
    msg: dict[str, Any],
    fds: list[int],
    sock: socket.socket,
    children: set[int],
    wake_r: int,
    wake_w: int,
) -> None:
    seq = msg.get("seq")
    if len(fds) != 1:
        error = "spawn needs one log fd"
        sock.send(orjson.dumps({"op": "spawn_failed", "seq": seq, "error": error}))
        return
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            os.close(err_r)
            code = _child(msg, fds[0], err_w, sock, (wake_r, wake_w))
        finally:
            os._exit(code)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    os.close(err_w)
    error = _read_error(err_r, pid, timeout=60.0)
    os.close(err_r)
    if error is None:
        children.add(pid)
        sock.send(orjson.dumps({"op": "spawned", "seq": seq, "pid": pid}))
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    sock.send(orjson.dumps({"op": "spawn_failed", "seq": seq, "error": error}))


def _read_error(err_r: int, pid: int, *, timeout: float) -> str | None:
    """EOF with nothing read means exec/import succeeded; bytes are the error text."""
    chunks = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"child {pid} neither started nor failed within {timeout}s"
        ready, _, _ = select.select([err_r], [], [], remaining)
        if not ready:
            continue
        data = os.read(err_r, 65536)
        if not data:
            return chunks.decode(errors="replace") if chunks else None
        chunks += data


def _child(
    msg: dict[str, Any], log_fd: int, err_w: int, sock: socket.socket, wake: tuple[int, int]
) -> int:
    """Runs in the forked child: become a clean process, then exec or call the target."""
    os.setpgid(0, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.set_wakeup_fd(-1)
    # SIGPIPE and SIGXFSZ too: Python ignores them, and SIG_IGN survives exec.
    for sig in (
        signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE,
        signal.SIGXFSZ,
    ):  # fmt: skip
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    sock.close()
    for fd in wake:
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in (devnull, log_fd):
        if fd > 2:
            os.close(fd)
    try:
        for inherited in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
            os.environ.pop(inherited, None)  # systemd's words to factoryd, not to children
        os.environ.update(msg.get("env") or {})
        os.environ["FACTORY_CHILD_ID"] = msg["id"]
        if msg.get("cwd"):
            os.chdir(msg["cwd"])
    except (OSError, ValueError) as exc:  # ValueError: a bad env name, a NUL byte
        os.write(err_w, f"cannot prepare {msg['id']}: {exc}".encode())
        return 127
    # Nothing the zygote holds (its epoll fd, fds factoryd inherited) reaches a child,
    # a Python target as much as an exec'd command.
    os.closerange(3, err_w)
    os.closerange(err_w + 1, os.sysconf("SC_OPEN_MAX"))
    if msg.get("command"):
        argv = msg["command"]
        try:
            os.execvpe(argv[0], argv, os.environ)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else exc
            os.write(err_w, f"cannot exec {argv[0]!r}: {why}".encode())
            return 127
    return _run_target(msg, err_w)


def _run_target(msg: dict[str, Any], err_w: int) -> int:
    # The dispositions a fresh python3 has: a write to a closed socket raises
    # BrokenPipeError instead of killing the service with SIGPIPE.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    module_name, _, func_name = msg["target"].partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except Exception as exc:  # noqa: BLE001 - any import error is a failed start
        os.write(err_w, f"cannot load target {msg['target']!r}: {exc!r}".encode())
        return 1
    os.close(err_w)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    try:
        result = func(list(msg.get("args") or []))
    except SystemExit as exc:
        result = exc.code
    except BaseException:  # noqa: BLE001 - report the crash in the child's log, then exit 1
        traceback.print_exc()
        result = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    if result is None:
        return 0
    return result if isinstance(result, int) else 1
