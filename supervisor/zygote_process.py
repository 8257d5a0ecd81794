"""What runs inside the zygote process: its fork loop, its spare, and its reaping.

`zygote_main` is called in the fork that `ZygoteClient.start` (supervisor/zygote.py)
makes; it never returns to factoryd's code. It starts one child per "spawn" message,
reaps them on SIGCHLD and reports each exit; when factoryd goes away it SIGKILLs every
child's process group and exits. The wire: one orjson message per SOCK_SEQPACKET packet.

The zygote is a child subreaper: a grandchild whose parent died (a daemon that left its
child's process group, say) is adopted here, reaped here (factoryd hears "orphan"), and
killed with everything else when factoryd goes away, even by SIGKILL.

A spawn is answered when the child's error pipe says how its start went (EOF: exec or
import succeeded; bytes: why not). The loop does not wait for that: a target whose
import takes seconds holds up neither other children's exit reports nor EOF handling.

The spare: forking a process the size of the zygote, and the Python that makes the
fork a clean child, cost more than a restart should wait for. So once the zygote has
been idle for SPARE_IDLE_S it forks one child ahead of need, made clean already
(supervisor/zygote_child.py), blocked until it is handed a spawn request. A spawn goes
to the spare when there is one (else it forks, as before), and the next spare is
forked at the next idle moment, not while the new child starts. Like Android's
pre-forked app processes: the spare knows nothing of what it will run, and whether to
restart anything stays factoryd's decision. factoryd hears each spare's pid ("spare").
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import select
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil

from ipc.posix_signals import PosixSignalPipe
from supervisor import zygote_child
from supervisor.prctl import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl
from supervisor.reaping import reap_exited

MAX_PACKET = zygote_child.MAX_PACKET  # the largest message either side reads
START_TIMEOUT_S = 60.0  # a child that neither execs nor fails its import by then fails
SPARE_IDLE_S = 0.02  # idle this long (no message, exit or start under way): fork a spare
_MAX_ERROR = 64 * 1024  # of a failed start's error text


@dataclass
class _Starting:
    """A child whose error pipe has not said yet how its start went."""

    pid: int
    seq: Any
    deadline: float
    error: bytearray = field(default_factory=bytearray)


@dataclass
class _Spare:
    """A child forked ahead of need and made clean, waiting on `channel` for a request."""

    pid: int
    channel: socket.socket  # the zygote's end
    err_r: int  # its error pipe, as for any start

    def close(self) -> None:
        """Drop it: EOF on its channel ends it (if it is still there)."""
        self.channel.close()
        os.close(self.err_r)


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

    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a bad preload must not stop the zygote
            sys.stderr.write(f"factoryd zygote: cannot preload {name}:\n")
            traceback.print_exc()

    zygote = _Zygote(sock, wake, parent_pid)
    try:
        return zygote.run()
    finally:
        zygote.kill_all()


class _Zygote:
    """The loop's state: the channel to factoryd, the children, those still starting,
    and the spare."""

    def __init__(self, sock: socket.socket, wake: PosixSignalPipe, parent_pid: int) -> None:
        self.sock = sock
        self.wake = wake
        self.parent_pid = parent_pid
        self.pid = os.getpid()
        self.children: set[int] = set()
        self.starting: dict[int, _Starting] = {}  # by error-pipe fd
        self.spare: _Spare | None = None
        self.spare_wanted = True  # False after a refused fork, until the next spawn
        self.sel = selectors.DefaultSelector()
        self.sel.register(sock, selectors.EVENT_READ, "channel")
        self.sel.register(wake.fileno(), selectors.EVENT_READ, "wake")

    def run(self) -> int:
        while True:
            events = self.sel.select(timeout=self._select_timeout())
            if not events and self.spare is None and self.spare_wanted:
                self._fork_spare()
            # answers first: a child that started and died at once is "spawned", then "exit"
            events.sort(key=lambda event: event[0].data != "starting")
            for key, _ in events:
                if key.data == "starting":
                    self._on_error_pipe(key.fd)
                elif key.data == "wake":
                    self.wake.read_nowait()
                    self._reap()
                elif not self._on_message():
                    return 0  # factoryd is gone, or said quit
            self._expire()
            if os.getppid() != self.parent_pid:
                return 0

    def _select_timeout(self) -> float:
        timeout = 5.0
        if self.spare is None and self.spare_wanted:
            timeout = SPARE_IDLE_S
        if self.starting:
            nearest = min(s.deadline for s in self.starting.values())
            timeout = min(timeout, nearest - time.monotonic())
        return max(0.0, timeout)

    def _send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(orjson.dumps(msg))

    # ------------------------------------------------------------------ factoryd's word

    def _on_message(self) -> bool:
        """One message from factoryd; False when it is gone or said quit."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_PACKET, 4)
        except ConnectionResetError:
            data, fds = b"", []
        try:
            if not data:
                return False
            msg = orjson.loads(data)
            if msg.get("op") == "quit":
                return False
            if msg.get("op") == "spawn":
                self._spawn(msg, data, fds)
            return True
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _spawn(self, msg: dict[str, Any], data: bytes, fds: list[int]) -> None:
        """Hand the request to the spare, or fork the child; the answer goes out from
        the loop once its error pipe says how the start went."""
        seq = msg.get("seq")
        self.spare_wanted = True
        if len(fds) != 1:
            self._send({"op": "spawn_failed", "seq": seq, "error": "spawn needs one log fd"})
            return
        if self.spare is not None:
            spare, self.spare = self.spare, None
            if self._hand_to(spare, data, fds[0], seq):
                return
        try:  # the kernel may refuse (EAGAIN at a pids limit, ENOMEM, EMFILE): that
            err_r, err_w = os.pipe2(os.O_CLOEXEC)  # spawn fails, the zygote goes on
        except OSError as exc:
            error = f"cannot start {msg.get('id')}: {exc}"
            self._send({"op": "spawn_failed", "seq": seq, "error": error})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(err_r)
            os.close(err_w)
            error = f"cannot fork {msg.get('id')}: {exc}"
            self._send({"op": "spawn_failed", "seq": seq, "error": error})
            return
        if pid == 0:
            code = 127
            try:
                os.close(err_r)
                start = functools.partial(zygote_child.start, msg, fds[0], err_w)
                code = self._child(start, err_w, fds[0])
            finally:
                os._exit(code)
        os.close(err_w)
        self._watch_start(pid, err_r, seq)

    def _hand_to(self, spare: _Spare, data: bytes, log_fd: int, seq: Any) -> bool:
        """Pass the request and its log fd on to `spare`; False if it is gone."""
        try:
            socket.send_fds(spare.channel, [data], [log_fd])
        except OSError:  # it died (its exit is reaped as nothing): fork instead
            spare.close()
            return False
        spare.channel.close()
        self._watch_start(spare.pid, spare.err_r, seq, forked=False)
        return True

    def _fork_spare(self) -> None:
        """Fork the next spare. If the kernel refuses (a pids limit, no memory, no fds)
        there is none until after the next spawn, which forks (and says why it cannot)."""
        try:
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
        except OSError:
            self.spare_wanted = False
            return
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError:
            os.close(err_r)
            os.close(err_w)
            self.spare_wanted = False
            return
        try:
            pid = os.fork()
        except OSError:
            for fd in (err_r, err_w):
                os.close(fd)
            ours.close()
            theirs.close()
            self.spare_wanted = False
            return
        if pid == 0:
            code = 127
            try:
                os.close(err_r)
                ours.close()
                serve = functools.partial(zygote_child.serve_as_spare, theirs, err_w)
                code = self._child(serve, err_w, theirs.fileno())
            finally:
                os._exit(code)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        os.close(err_w)
        theirs.close()
        ours.setblocking(False)  # a hand-over never waits on a spare
        self.spare = _Spare(pid, ours, err_r)
        self._send({"op": "spare", "pid": pid})

    def _child(self, then: Callable[[], int], *keep: int) -> int:
        """In a fresh fork: let go of the zygote's channel, become clean (keeping the
        fds in `keep`), then `then()`; returns the exit code."""
        self.sock.close()
        if not zygote_child.become_clean(self.pid, keep):
            return 1  # the zygote died before PR_SET_PDEATHSIG was set
        return then()

    def _watch_start(self, pid: int, err_r: int, seq: Any, *, forked: bool = True) -> None:
        if forked:
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)
        os.set_blocking(err_r, False)
        self.children.add(pid)  # from now on: reaped and reported like any child
        self.starting[err_r] = _Starting(pid, seq, time.monotonic() + START_TIMEOUT_S)
        self.sel.register(err_r, selectors.EVENT_READ, "starting")

    # ------------------------------------------------------------------ starts under way

    def _on_error_pipe(self, fd: int) -> None:
        """Read a starting child's error pipe; at EOF, answer its spawn. Read to EOF
        when it is there: a child that wrote why and exited is answered before its
        exit is reaped (in the same turn), so it is a failed start and not an exit."""
        start = self.starting[fd]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not data:
                break
            start.error += data[: _MAX_ERROR - len(start.error)]
        self._answer(fd, start.error.decode(errors="replace") or None)

    def _expire(self) -> None:
        now = time.monotonic()
        for fd, start in list(self.starting.items()):
            if now >= start.deadline:
                why = f"child {start.pid} neither started nor failed within {START_TIMEOUT_S:g}s"
                self._answer(fd, why)

    def _answer(self, fd: int, error: str | None) -> None:
        """Say how a start went; a failed child is killed with its group, and not
        reported as an exit (it was never factoryd's child)."""
        start = self.starting.pop(fd)
        self.sel.unregister(fd)
        os.close(fd)
        if error is None:
            self._send({"op": "spawned", "seq": start.seq, "pid": start.pid})
            return
        self.children.discard(start.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(start.pid, signal.SIGKILL)
        self._send({"op": "spawn_failed", "seq": start.seq, "error": error})

    # ------------------------------------------------------------------ exits

    def _reap(self) -> None:
        for pid, status in reap_exited():
            if self.spare is not None and pid == self.spare.pid:
                self.spare.close()  # killed while it waited: fork another when idle
                self.spare = None
                continue
            op = "exit" if pid in self.children else "orphan"  # an orphan: adopted, reaped
            self.children.discard(pid)
            self._send({"op": op, "pid": pid, "exit_code": os.waitstatus_to_exitcode(status)})

    def kill_all(self, *, timeout_s: float = 10.0) -> None:
        """SIGKILL every child's process group and every adopted orphan, again for those
        adopted meanwhile (a child's daemon is adopted when the child dies), and reap
        them: until none is left or `timeout_s` passed."""
        if self.spare is not None:
            self.spare.close()
            self.spare = None
        wake_r = self.wake.fileno()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = self.children | _our_children()
            if not pids:
                return
            for pid in pids:
                for kill in (os.killpg, os.kill):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill(pid, signal.SIGKILL)
            for pid, _status in reap_exited():
                self.children.discard(pid)
            with contextlib.suppress(OSError):  # SIGCHLD writes here: wait for the next one
                select.select([wake_r], [], [], min(0.1, max(0.0, deadline - time.monotonic())))
                os.read(wake_r, 4096)


def _our_children() -> set[int]:
    """Every process whose parent we are: those we forked and orphans we adopted."""
    with contextlib.suppress(psutil.Error):
        return {child.pid for child in psutil.Process().children()}
    return set()
