"""The ProcessHost: how the supervision tree touches processes, and factoryd's one on the zygote.

A `SupervisorNode` never forks, signals or waits itself; it asks its `ProcessHost`.
`ZygoteProcessHost` spawns through the zygote, stops process groups (SIGTERM, a wait
bounded by the child's shutdown time, SIGKILL) and waits for READY=1. While it waits
it runs factoryd's loop (`HostLoop.pump_nested`), so exits, logs, signals, the watchdog
and the control requests that change no tree (status, logs, kill, shutdown) keep flowing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from supervisor.child_logs import ChildLogs
from supervisor.child_notify import ChildNotify
from supervisor.policy import SHUTDOWN, ExitKind, ExitReason, reason_from_wait_status
from supervisor.spec import Start
from supervisor.zygote import SpawnError, ZygoteClient, ZygoteGone

SPAWN_TIMEOUT_S = 60.0
KILL_WAIT_S = 10.0  # after SIGKILL, how long to wait for the exit before giving up


class ProcessHost(Protocol):
    """What a supervisor node needs from the daemon: narrow on purpose."""

    def spawn(self, child_id: str, start: Start) -> int: ...

    def terminate(self, pids: list[int], shutdown_s: float) -> dict[int, ExitReason]: ...

    def wait_ready(self, pid: int, timeout_s: float) -> str | None: ...

    def now(self) -> float: ...

    def report(self, event: str, **fields: Any) -> None: ...

    def defer(self, call: Callable[[], None]) -> None: ...


class HostLoop(Protocol):
    """What the host needs from factoryd's event loop while it waits."""

    stop_requested: bool

    @property
    def zygote_dead(self) -> bool: ...

    def pump_nested(self, timeout: float) -> None: ...

    def watch_log(self, read_fd: int) -> None: ...

    def zygote_died(self) -> None: ...

    def report(self, event: str, **fields: Any) -> None: ...

    def defer(self, call: Callable[[], None]) -> None: ...


class ZygoteProcessHost:
    """The ProcessHost factoryd's tree runs on: children forked by the zygote."""

    def __init__(
        self,
        zygote: ZygoteClient,
        child_logs: ChildLogs,
        child_notify: ChildNotify,
        loop: HostLoop,
        *,
        runtime_dir: Path,
        state_dir: Path,
    ) -> None:
        self.zygote = zygote
        self.child_logs = child_logs
        self.child_notify = child_notify
        self.loop = loop
        self.runtime_dir = runtime_dir
        self.state_dir = state_dir

    def spawn(self, child_id: str, start: Start) -> int:
        env = dict(start.env)
        env.setdefault("FACTORY_RUNTIME_DIR", str(self.runtime_dir))
        env.setdefault("FACTORY_STATE_DIR", str(self.state_dir))
        env["NOTIFY_SOCKET"] = str(self.child_notify.path)
        start = replace(start, env=tuple(env.items()))
        try:  # out of file descriptors (EMFILE/ENFILE): a failed start, reported as such
            read_fd, write_fd = self.child_logs.open_pipe(child_id)
        except OSError as exc:
            raise SpawnError(f"cannot make a log pipe for {child_id}: {exc}") from None
        self.loop.watch_log(read_fd)
        try:
            return self.zygote.spawn(
                child_id, start, write_fd, timeout=SPAWN_TIMEOUT_S, pump=self._pump_spawn
            )
        except ZygoteGone:
            self.loop.zygote_died()
            raise
        finally:
            os.close(write_fd)

    def _pump_spawn(self, seconds: float) -> None:
        """The loop turns while a child starts (a target may import for seconds): other
        children's logs are read, their exits queued, the watchdog beats."""
        self.loop.pump_nested(seconds)
        if self.loop.zygote_dead:
            raise ZygoteGone("the zygote died while a child was starting")
        if self.loop.stop_requested:  # `systemctl stop` during a slow start: stop now
            raise SpawnError("factoryd is stopping")

    def terminate(self, pids: list[int], shutdown_s: float) -> dict[int, ExitReason]:
        """SIGTERM each process group, wait up to `shutdown_s`, then SIGKILL the rest.

        `shutdown_s` 0 is OTP's brutal_kill, inf waits as long as it takes. After the
        leader is gone its group is SIGKILLed too, so no subprocess outlives it.
        """
        first = signal.SIGKILL if shutdown_s == 0 else signal.SIGTERM
        for pid in pids:
            killpg(pid, first)
        results: dict[int, ExitReason] = {}
        self._wait_exits(set(pids), time.monotonic() + shutdown_s, results)
        late = [p for p in pids if p not in results]
        for pid in late:
            killpg(pid, signal.SIGKILL)
        if late:
            self._wait_exits(set(late), time.monotonic() + KILL_WAIT_S, results)
        for pid in pids:
            killpg(pid, signal.SIGKILL)  # leftovers in the child's group
            if pid in late:
                self.report("shutdown_timeout", pid=pid, shutdown_s=shutdown_s)
                results[pid] = ExitReason(ExitKind.SHUTDOWN, "killed after shutdown timeout")
            elif pid not in results:
                results[pid] = ExitReason(ExitKind.SHUTDOWN, "did not exit after SIGKILL")
        return results

    def wait_ready(self, pid: int, timeout_s: float) -> str | None:
        """Wait for READY=1 from `pid`; None once it came, else why not (it exited, or
        the timeout passed). An exit stays queued for `terminate` to take."""
        deadline = time.monotonic() + timeout_s
        while not self.child_notify.is_ready(pid):
            exited = next((e for e in self.zygote.exits if e.pid == pid), None)
            if exited is not None:
                return f"exited before READY=1 ({reason_from_wait_status(exited.exit_code)})"
            if self.loop.zygote_dead:  # it died with the zygote
                return "the zygote died"
            if self.loop.stop_requested:  # `systemctl stop` during a hung start: stop now
                return "factoryd is stopping"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"no READY=1 within {timeout_s:g}s"
            self.loop.pump_nested(min(remaining, 1.0))
        return None

    def _wait_exits(self, pids: set[int], deadline: float, results: dict[int, ExitReason]) -> None:
        while pids:
            for event in [e for e in self.zygote.exits if e.pid in pids]:
                self.zygote.exits.remove(event)
                pids.discard(event.pid)
                self.child_notify.forget(event.pid)
                reason = reason_from_wait_status(event.exit_code)
                if reason.kind is ExitKind.ABNORMAL and event.exit_code == -signal.SIGTERM:
                    reason = SHUTDOWN
                results[event.pid] = SHUTDOWN if reason.kind is ExitKind.NORMAL else reason
            remaining = deadline - time.monotonic()
            if not pids or remaining <= 0 or self.loop.zygote_dead:
                return  # (no exit is reported once the zygote is gone)
            self.loop.pump_nested(min(remaining, 1.0))

    def now(self) -> float:
        return time.monotonic()

    def report(self, event: str, **fields: Any) -> None:
        self.loop.report(event, **fields)

    def defer(self, call: Callable[[], None]) -> None:
        self.loop.defer(call)


def killpg(pgid: int, sig: int) -> None:
    """Signal a process group that may be gone already (then nothing happens)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
