"""The zygote: a clean process that forks every child, started before any thread or socket.

factoryd forks the zygote first thing, so the zygote holds no ZeroMQ context, no
threads and none of the daemon's sockets. Every child is forked from it:

- the child gets its own process group (setpgid in both parent and child, as shells do)
  and PR_SET_PDEATHSIG(SIGKILL), so it dies with the zygote;
- an external command is exec'd; a Python target ("pkg.mod:func") is imported and called
  in the fork (modules listed in `preload` are imported once, in the zygote);
- a close-on-exec error pipe tells exec or import failure from success, so a bad child
  is a failed start, not a crash loop;
- a restart does not wait for a fork: once idle, the zygote keeps one child forked and
  made clean ahead of need (its "spare", announced as {"op": "spare", "pid"}), and the
  next spawn becomes that child;
- the zygote reaps its children on SIGCHLD and reports each exit to factoryd; it is a
  child subreaper, so orphans a child leaves behind are adopted and reaped there too;
- when factoryd goes away (EOF on the channel, even after SIGKILL) the zygote kills every
  child's process group and every orphan it adopted with SIGKILL, reaps them and exits:
  nothing is left behind, even what left its process group.

Wire: an AF_UNIX SOCK_SEQPACKET pair, one orjson message per packet, the child's log fd
passed with SCM_RIGHTS on "spawn". This module is factoryd's side; what runs in the
zygote is in supervisor/zygote_process.py, and in its children up to exec in
supervisor/zygote_child.py.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from supervisor.spec import Start
from supervisor.zygote_process import MAX_PACKET, zygote_main


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
        self.orphans_reaped = 0  # adopted by the zygote (a subreaper) and reaped there
        self.spare_pid: int | None = None  # the zygote's spare, forked ahead of need
        self._seq = 0  # numbers spawn requests, so a late reply is not taken for the next
        self._awaiting: int | None = None  # the spawn being waited for, and its reply
        self._reply: dict[str, Any] | None = None

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
                code = zygote_main(child_sock, parent_pid, preload)
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
                data = self._sock.recv(MAX_PACKET)
            except BlockingIOError:
                return
            except ConnectionResetError as exc:
                raise ZygoteGone("zygote channel reset") from exc
            if not data:
                raise ZygoteGone("zygote closed its channel")
            self._queue(orjson.loads(data))

    def _queue(self, msg: dict[str, Any]) -> None:
        if msg.get("op") == "exit":
            self.exits.append(Exit(int(msg["pid"]), int(msg["exit_code"])))
        elif msg.get("op") == "orphan":
            self.orphans_reaped += 1
        elif msg.get("op") == "spare":
            self.spare_pid = int(msg["pid"])
        elif self._awaiting is not None and msg.get("seq") == self._awaiting:
            self._reply = msg
        elif msg.get("op") == "spawned":  # the reply to a spawn that already timed out:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # nobody
                os.killpg(int(msg["pid"]), signal.SIGKILL)  # tracks that child: end it

    def spawn(
        self,
        child_id: str,
        start: Start,
        log_fd: int,
        *,
        timeout: float,
        pump: Callable[[float], None] | None = None,
    ) -> int:
        """Start one child; return its pid (also its process group id).

        Returns once the zygote answers: for a command, once exec succeeded; for a
        target, once its module imported. Raises SpawnError with the reason. `pump(s)`
        is the caller's event loop, turned while waiting (up to s seconds); it must
        read this channel (`read_nowait`) when it is readable. Without one, this waits
        on the channel alone.
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
            "pass_env": list(start.pass_env),
            "cwd": start.cwd,
        }
        deadline = time.monotonic() + timeout
        try:
            socket.send_fds(self._sock, [orjson.dumps(request)], [log_fd])
        except OSError as exc:
            raise ZygoteGone(f"cannot reach the zygote: {exc}") from exc
        self._awaiting, self._reply = self._seq, None
        try:
            while self._reply is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SpawnError(f"no answer from the zygote within {timeout}s")
                if pump is not None:
                    pump(min(remaining, 1.0))
                elif self.wait_readable(remaining):
                    self.read_nowait()
            reply: dict[str, Any] = self._reply
        finally:
            self._awaiting = self._reply = None
        if reply.get("op") == "spawned":
            self.spawned += 1
            pid = int(reply["pid"])
            if pid == self.spare_pid:  # the spare became this child
                self.spare_pid = None
            return pid
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
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already: factoryd's orphan reaper takes any
                break  # child, and a dead zygote's pid must not be signalled again
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

    def statistics(self) -> dict[str, int | None]:
        return {
            "pid": self.pid,
            "spawned": self.spawned,
            "spawn_failures": self.spawn_failures,
            "spare_pid": self.spare_pid,
        }
