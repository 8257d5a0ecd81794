"""Deadline-bounded waiting for tests: poll a condition, never sleep as synchronisation."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline."""


def wait_until(predicate: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Return the first truthy value of `predicate()`; raise WaitTimeout after `timeout` s.

    Backs off from 1 ms to 50 ms between checks: this bounds a wait, it does not order
    events (ordering comes from the condition itself).
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def pid_gone(pid: int) -> bool:
    """True once `pid` no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in (b"Z", b"X")


def wait_gone(pid: int, *, timeout: float = 10.0) -> None:
    wait_until(lambda: pid_gone(pid), timeout=timeout, what=f"pid {pid} to exit")


def pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and not pid_gone(pid)


def naps(pid: int) -> int:
    """How many times `pid` (its main thread) has gone to sleep: its voluntary context
    switches, from /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for pid {pid}")


def wait_asleep(pid: int, *, more_naps: int = 2, timeout: float = 30.0, what: str = "") -> None:
    """Wait until `pid` has gone to sleep `more_naps` more times and sleeps now.

    A process that spins (a select that keeps returning at once on a readable fd) is
    never put to sleep, so for it this raises WaitTimeout: a check of what the process
    does while it waits, not of how long anything takes. One nap may be in flight
    when this starts, so more_naps >= 2 tells a spinning process from a sleeping one.
    """

    def asleep() -> bool:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return naps(pid) >= start + more_naps and state == b"S"

    start = naps(pid)
    wait_until(asleep, timeout=timeout, what=what or f"pid {pid} to sleep {more_naps} more times")
