"""factoryd out of file descriptors (RLIMIT_NOFILE lowered under it with prlimit): a
control connection it cannot take is closed, not a crash or a busy loop, and a child it
cannot make a log pipe for is a failed start that the restart policy handles."""

from __future__ import annotations

import errno
import os
import signal
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

from ipc import control
from supervisor import control_api
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
        # factoryd closes a control connection just after sending its reply: counted
        # before that close, the connection's fd would come free under the limit (and
        # serve the next request). Once it went back to sleep, the close is done.
        wait_asleep(d.proc.pid, what="factoryd idle after answering status")
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


def _worker(pid: int) -> dict[str, Any]:
    return {"id": "svc", "type": "worker", "pid": pid, "started_at": 100.0}


def test_status_usage_left_out_when_proc_cannot_be_opened(monkeypatch) -> None:
    """psutil raises a bare OSError (not a psutil.Error) when the daemon has no fd left
    to open /proc with: the worker is shown without usage figures, nothing crashes."""

    def out_of_fds(pid: int) -> psutil.Process:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(control_api.psutil, "Process", out_of_fds)
    tree = {"id": "root", "type": "supervisor", "children": [_worker(os.getpid())]}
    control_api._add_usage(tree, now=103.5)
    worker = tree["children"][0]
    assert worker["uptime_s"] == 3.5
    assert "rss_bytes" not in worker and "cpu_s" not in worker and "processes" not in worker


def test_status_usage_left_out_when_a_read_runs_out_of_fds(monkeypatch) -> None:
    """The worker opened, its memory read failing with EMFILE: no figures, not zeros."""

    def out_of_fds(self: psutil.Process) -> Any:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(psutil.Process, "memory_info", out_of_fds)
    worker = _worker(os.getpid())
    control_api._add_usage(worker, now=100.0)
    assert "rss_bytes" not in worker and "cpu_s" not in worker


def test_status_usage_of_a_live_worker() -> None:
    worker = _worker(os.getpid())
    control_api._add_usage(worker, now=100.0)
    assert worker["rss_bytes"] > 0 and worker["processes"] >= 1 and worker["cpu_s"] >= 0
