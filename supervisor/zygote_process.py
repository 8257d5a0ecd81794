"""What runs inside the zygote process: its fork loop, and each child's set-up up to exec.

`zygote_main` is called in the fork that `ZygoteClient.start` (supervisor/zygote.py)
makes; it never returns to factoryd's code. It forks one child per "spawn" message,
reaps them on SIGCHLD and reports each exit; when factoryd goes away it SIGKILLs every
child's process group and exits. The wire: one orjson message per SOCK_SEQPACKET packet.

The zygote is a child subreaper: a grandchild whose parent died (a daemon that left its
child's process group, say) is adopted here, reaped here (factoryd hears "orphan"), and
killed with everything else when factoryd goes away, even by SIGKILL.

A spawn is answered when the child's error pipe says how its start went (EOF: exec or
import succeeded; bytes: why not). The loop does not wait for that: a target whose
import takes seconds holds up neither other children's exit reports nor EOF handling.
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
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil

from ipc.posix_signals import PosixSignalPipe
from supervisor.prctl import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl
from supervisor.reaping import reap_exited
from supervisor.spec import is_secret_env

MAX_PACKET = 1 << 20  # the largest message either side reads
START_TIMEOUT_S = 60.0  # a child that neither execs nor fails its import by then fails
_MAX_ERROR = 64 * 1024  # of a failed start's error text


@dataclass
class _Starting:
    """A forked child whose error pipe has not said yet how its start went."""

    pid: int
    seq: Any
    deadline: float
    error: bytearray = field(default_factory=bytearray)


def zygote_main(sock: socket.socket, parent_pid: int, preload: tuple[str, ...]) -> int:
    """The zygote's loop; returns its exit code once factoryd is gone or says quit."""
    # Our own group: a terminal's Ctrl-C goes to factoryd, which stops things in order.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        return 1
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of our children come to us, not to init
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # SIGCHLD wakes the loop to reap; SIGTERM (parent died) only wakes it: EOF comes next.
    wake = PosixSignalPipe((signal.SIGCHLD, signal.SIGTERM)).install()
    wake_r, wake_w = wake.fileno(), wake.write_fd

    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a bad preload must not stop the zygote
            sys.stderr.write(f"factoryd zygote: cannot preload {name}:\n")
            traceback.print_exc()

    children: set[int] = set()
    starting: dict[int, _Starting] = {}  # by error-pipe fd
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "channel")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    try:
        while True:
            events = sel.select(timeout=_select_timeout(starting))
            # answers first: a child that started and died at once is "spawned", then "exit"
            events.sort(key=lambda event: event[0].data != "starting")
            for key, _ in events:
                if key.data == "starting":
                    _on_error_pipe(key.fd, starting, children, sock, sel)
                elif key.data == "wake":
                    wake.read_nowait()
                    _reap(children, sock)
                elif not _on_message(sock, sel, children, starting, wake_r, wake_w):
                    return 0  # factoryd is gone, or said quit
            _expire(starting, children, sock, sel)
            if os.getppid() != parent_pid:
                return 0
    finally:
        _kill_all(children, wake_r)


def _select_timeout(starting: dict[int, _Starting]) -> float:
    if not starting:
        return 5.0
    nearest = min(s.deadline for s in starting.values())
    return max(0.0, min(5.0, nearest - time.monotonic()))


def _on_message(  # noqa: PLR0917 - one call site, all state of the zygote loop
    sock: socket.socket,
    sel: selectors.BaseSelector,
    children: set[int],
    starting: dict[int, _Starting],
    wake_r: int,
    wake_w: int,
) -> bool:
    """One message from factoryd; False when it is gone or said quit."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 4)
    except ConnectionResetError:
        data, fds = b"", []
    try:
        if not data:
            return False
        msg = orjson.loads(data)
        if msg.get("op") == "quit":
            return False
        if msg.get("op") == "spawn":
            _spawn(msg, fds, sock, children, starting, sel, (wake_r, wake_w))
        return True
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _on_error_pipe(
    fd: int,
    starting: dict[int, _Starting],
    children: set[int],
    sock: socket.socket,
    sel: selectors.BaseSelector,
) -> None:
    """Read a starting child's error pipe; at EOF, answer its spawn."""
    start = starting[fd]
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return
    if data:
        start.error += data[: _MAX_ERROR - len(start.error)]
        return
    _answer(fd, start.error.decode(errors="replace") or None, starting, children, sock, sel)


def _expire(
    starting: dict[int, _Starting],
    children: set[int],
    sock: socket.socket,
    sel: selectors.BaseSelector,
) -> None:
    now = time.monotonic()
    for fd, start in list(starting.items()):
        if now >= start.deadline:
            why = f"child {start.pid} neither started nor failed within {START_TIMEOUT_S:g}s"
            _answer(fd, why, starting, children, sock, sel)


def _answer(  # noqa: PLR0917 - one call site each, all state of the zygote loop
    fd: int,
    error: str | None,
    starting: dict[int, _Starting],
    children: set[int],
    sock: socket.socket,
    sel: selectors.BaseSelector,
) -> None:
    """Say how a start went; a failed child is killed with its group, and not reported
    as an exit (it was never factoryd's child)."""
    start = starting.pop(fd)
    sel.unregister(fd)
    os.close(fd)
    if error is None:
        reply = {"op": "spawned", "seq": start.seq, "pid": start.pid}
    else:
        children.discard(start.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(start.pid, signal.SIGKILL)
        reply = {"op": "spawn_failed", "seq": start.seq, "error": error}
    with contextlib.suppress(OSError):
        sock.send(orjson.dumps(reply))


def _reap(children: set[int], sock: socket.socket) -> None:
    for pid, status in reap_exited():
        op = "exit" if pid in children else "orphan"  # an orphan: adopted, now reaped
        children.discard(pid)
        msg = {"op": op, "pid": pid, "exit_code": os.waitstatus_to_exitcode(status)}
        with contextlib.suppress(OSError):
            sock.send(orjson.dumps(msg))


def _kill_all(children: set[int], wake_r: int, *, timeout_s: float = 10.0) -> None:
    """SIGKILL every child's process group and every adopted orphan, again for those
    adopted meanwhile (a child's daemon is adopted when the child dies), and reap them:
    until none is left or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = children | _our_children()
        if not pids:
            return
        for pid in pids:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        for pid, _status in reap_exited():
            children.discard(pid)
        with contextlib.suppress(OSError):  # SIGCHLD writes here: wait for the next one
            select.select([wake_r], [], [], min(0.1, max(0.0, deadline - time.monotonic())))
            os.read(wake_r, 4096)


def _our_children() -> set[int]:
    """Every process whose parent we are: those we forked and orphans we adopted."""
    with contextlib.suppress(psutil.Error):
        return {child.pid for child in psutil.Process().children()}
    return set()


def _spawn(  # noqa: PLR0917 - one call site, all state of the zygote loop
    msg: dict[str, Any],
    fds: list[int],
    sock: socket.socket,
    children: set[int],
    starting: dict[int, _Starting],
    sel: selectors.BaseSelector,
    wake: tuple[int, int],
) -> None:
    """Fork the child and watch its error pipe; the answer goes out from the loop."""
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
            code = _child(msg, fds[0], err_w, sock, wake)
        finally:
            os._exit(code)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    os.close(err_w)
    os.set_blocking(err_r, False)
    children.add(pid)  # from now on: reaped and reported like any child
    deadline = time.monotonic() + START_TIMEOUT_S
    starting[err_r] = _Starting(pid, seq, deadline)
    sel.register(err_r, selectors.EVENT_READ, "starting")


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
        passed = set(msg.get("pass_env") or ())
        for name in [n for n in os.environ if is_secret_env(n) and n not in passed]:
            del os.environ[name]  # API keys and tokens only where the spec passes them
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
