"""What runs inside the zygote process: its fork loop, and each child's set-up up to exec.

`zygote_main` is called in the fork that `ZygoteClient.start` (supervisor/zygote.py)
makes; it never returns to factoryd's code. It forks one child per "spawn" message,
reaps them on SIGCHLD and reports each exit; when factoryd goes away it SIGKILLs every
child's process group and exits. The wire: one orjson message per SOCK_SEQPACKET packet.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any

import orjson

from supervisor.prctl import PR_SET_PDEATHSIG, prctl

MAX_PACKET = 1 << 20  # the largest message either side reads


def zygote_main(sock: socket.socket, parent_pid: int, preload: tuple[str, ...]) -> int:
    """The zygote's loop; returns its exit code once factoryd is gone or says quit."""
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
                    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 4)
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
    try:  # the kernel may refuse (EAGAIN at a pids limit, ENOMEM, EMFILE): that
        err_r, err_w = os.pipe2(os.O_CLOEXEC)  # spawn fails, the zygote goes on
    except OSError as exc:
        error = f"cannot start {msg.get('id')}: {exc}"
        sock.send(orjson.dumps({"op": "spawn_failed", "seq": seq, "error": error}))
        return
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(err_r)
        os.close(err_w)
        error = f"cannot fork {msg.get('id')}: {exc}"
        sock.send(orjson.dumps({"op": "spawn_failed", "seq": seq, "error": error}))
        return
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
