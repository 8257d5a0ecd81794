"""factoryd out of file descriptors (RLIMIT_NOFILE lowered under it with prlimit): a
control connection it cannot take is closed, not a crash or a busy loop, and a child it
cannot make a log pipe for is a failed start that the restart policy handles."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import psutil
import pytest

from ipc import control
from tests.harness import target
from tests.waiting import wait_asleep, wait_until


def test_factoryd_out_of_descriptors_refuses_and_fails_starts_by_name(
    factoryd, journal, tmp_path: Path
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # its watchdog wakes it
    notify.bind(str(tmp_path / "notify.sock"))
    try:
        d = factoryd(
            f"""
            [supervisor]
            intensity = 2
            period = 30
            [[supervisor.children]]
            id = "svc"
            {target("serve", str(journal.path))}
            """,
            env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"},
        ).start()
        svc = d.pid("svc")
        assert d.proc is not None and svc is not None
        daemon = psutil.Process(d.proc.pid)
        _soft, hard = daemon.rlimit(psutil.RLIMIT_NOFILE)
        full = daemon.num_fds()  # every descriptor it may have is in use
        daemon.rlimit(psutil.RLIMIT_NOFILE, (full, hard))  # the soft limit: ours to raise again
        for _ in range(3):  # closed unserved (or answered "internal"), never a crash
            with pytest.raises(control.ControlError):
                control.call(d.socket, "status", {}, timeout=5)
        assert d.proc.poll() is None  # alive, and not spinning on a readable listener:
        wait_asleep(d.proc.pid, what="factoryd asleep between beats, not spinning")
        # none free again; the dead child's log pipe gives back one, and a new one needs two
        daemon.rlimit(psutil.RLIMIT_NOFILE, (daemon.num_fds(), hard))
        os.killpg(svc, signal.SIGKILL)  # its restart needs a log pipe: none can be made
        assert d.wait_exit() == 1  # the policy gave up after its intensity, cleanly
        log = d.log()
        assert "cannot make a log pipe for svc" in log
        assert "Traceback" not in log
        wait_until(lambda: not psutil.pid_exists(svc) or psutil.Process(svc).status() == "zombie",
                   what="svc gone")  # fmt: skip
    finally:
        notify.close()
