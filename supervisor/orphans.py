"""Orphan reaping: factoryd is a child subreaper (PR_SET_CHILD_SUBREAPER).

A grandchild whose parent died is re-parented to the nearest living subreaper: the
zygote (which reaps and, at the end, kills what it adopted), or factoryd once the
zygote is gone. What comes here must be reaped (on SIGCHLD) or it stays a zombie. The
zygote is factoryd's child too: its exit reaped here means every child died with it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import psutil

from supervisor.process_host import KILL_WAIT_S
from supervisor.reaping import reap_exited


class Report(Protocol):
    """One structured record per event (factoryd's `Daemon.report`)."""

    def __call__(self, event: str, **fields: Any) -> None: ...


class OrphanReaper:
    """Reaps factoryd's adopted children; `reaped` counts them for `factoryctl status`."""

    def __init__(
        self, zygote_pid: int, *, on_zygote_exit: Callable[[], None], report: Report
    ) -> None:
        self.zygote_pid = zygote_pid
        self.on_zygote_exit = on_zygote_exit
        self.report = report
        self.reaped = 0

    def reap_nowait(self) -> None:
        """Reap every exited child without blocking (call on SIGCHLD)."""
        for pid, status in reap_exited():
            if pid == self.zygote_pid:
                self.on_zygote_exit()
                return
            self.reaped += 1
            self.report("orphan_reaped", pid=pid, exit_code=os.waitstatus_to_exitcode(status))

    def kill_all(self, pump: Callable[[float], None], *, timeout_s: float = KILL_WAIT_S) -> None:
        """At stop, orphans adopted by us that left their child's process group are our
        own children now: SIGKILL them and reap, for up to `timeout_s` seconds.
        `pump(timeout)` keeps factoryd's loop turning in between."""
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.reap_nowait()
            if not psutil.Process().children():
                return
            pump(0.05)
