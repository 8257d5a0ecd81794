"""Review of the zygote (supervisor/zygote_process.py): a bug found in review, shown
with a real zygote whose fork is refused by a real pids cgroup."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.spec import Start
from supervisor.zygote import SpawnError, ZygoteClient
from tests.waiting import pid_alive

PIDS = Path("/sys/fs/cgroup/pids")
_names = itertools.count()


@contextlib.contextmanager
def pids_cgroup() -> Iterator[Path]:
    """A fresh cgroup (v1 pids controller); its members go back to the root after."""
    if not os.access(PIDS / "cgroup.procs", os.W_OK):
        pytest.skip(f"needs a writable pids cgroup at {PIDS} (root, cgroup v1)")
    path = PIDS / f"factory-test-{os.getpid()}-{next(_names)}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # gone already
                (PIDS / "cgroup.procs").write_text(pid)
        path.rmdir()


def test_a_fork_the_kernel_refuses_is_a_failed_spawn_not_the_zygotes_death() -> None:
    """os.fork() raising (EAGAIN: a pids limit, or no memory) went up through the
    zygote's loop, which then SIGKILLed every child it had and exited: factoryd lost
    its whole tree (exit 70) because one spawn could not fork."""
    zygote = ZygoteClient.start()
    log_r, log_w = os.pipe()
    started: list[int] = []
    try:
        started.append(zygote.spawn("first", Start(command=("sleep", "60")), log_w, timeout=10))
        with pids_cgroup() as cgroup:
            (cgroup / "pids.max").write_text("1")  # the zygote alone: no fork fits
            (cgroup / "cgroup.procs").write_text(str(zygote.pid))
            with pytest.raises(SpawnError, match=r"cannot fork second: .*Resource temporarily"):
                zygote.spawn("second", Start(command=("sleep", "60")), log_w, timeout=10)
            assert pid_alive(zygote.pid) and pid_alive(started[0])
            (cgroup / "pids.max").write_text("max")
            started.append(
                zygote.spawn("second", Start(command=("sleep", "60")), log_w, timeout=10)
            )
        assert all(pid_alive(pid) for pid in started)
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        os.close(log_r)
        os.close(log_w)
        zygote.close()
