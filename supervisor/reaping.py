"""Reaping exited children without blocking: the loop factoryd's orphan reaper and the
zygote (on SIGCHLD, and while it kills everything at the end) share."""

from __future__ import annotations

import os
from collections.abc import Iterator


def reap_exited() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of each child that has exited, until none is waiting."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return
        if pid == 0:
            return
        yield pid, status
