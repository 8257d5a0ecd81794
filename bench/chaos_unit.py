"""factoryd run the way systemd runs systemd/factory.service, for the chaos soak.

Type=notify: factoryd gets a NOTIFY_SOCKET of ours and READY=1 says the tree is up.
Restart=on-failure with RestartSec=2s: when factoryd dies (SIGKILL, or exit 70 when its
zygote died) it is started again with the same config, runtime and state dirs.
KillMode=mixed: when the main process is gone, whatever is left of the unit (here: every
process below us, as we are a child subreaper) is SIGKILLed before the restart, as
systemd does to the cgroup; how many were left is counted (`orphans`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from ipc import control, paths
from procs.demo.service import stop_factoryd
from supervisor import prctl

RESTART_S = 2.0  # RestartSec=2s
CALL_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 60.0
ORPHAN_GRACE_S = 3.0  # for what dies with its parent (PDEATHSIG) before we count it


class Unit:
    """One factoryd unit: start, READY=1, status, restart after a death, stop."""

    def __init__(self, root: Path, config: Path, work: Path, env: dict[str, str]) -> None:
        self.root, self.config, self.work = root, config, work
        self.runtime, self.state = work / "run", work / "state"
        self.env = dict(env)
        self.notify_path = work / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.setblocking(False)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.starts = 0
        self.orphans = 0  # processes left when factoryd died, SIGKILLed as systemd would
        self.stopped_code: int | None = None

    # -- the process -----------------------------------------------------------------
    def start(self) -> None:
        self.ready = False
        self.starts += 1
        env = {**self.env, "NOTIFY_SOCKET": str(self.notify_path)}
        with (self.work / "factoryd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supervisor.daemon", "--config", str(self.config),
                 "--runtime-dir", str(self.runtime), "--state-dir", str(self.state)],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_stop_with_us,  # noqa: PLW1509 - the soak runs no threads
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        """factoryd's exit status once it has exited (reaped here), else None."""
        return None if self.proc is None else self.proc.poll()

    def poll_notify(self) -> bool:
        """Read the notify datagrams that came; True when READY=1 was among them."""
        got = False
        while True:
            try:
                data = self.notify.recv(4096)
            except BlockingIOError:
                return got
            if b"READY=1" in data.split(b"\n"):
                self.ready = got = True

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll_notify():
                return True
            if self.exited() is not None:
                return False
            time.sleep(0.05)
        return False

    def restart_after_death(self) -> None:
        """KillMode=mixed, RestartSec=2s, then a new start (factoryd already exited)."""
        self.ready = False
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while descendants() and time.monotonic() < deadline:
            reap_orphans(keep=set())
            time.sleep(0.05)
        left = descendants()
        self.orphans += len(left)
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        deadline = time.monotonic() + 10
        while descendants() and time.monotonic() < deadline:
            reap_orphans(keep=set())
            time.sleep(0.05)
        time.sleep(RESTART_S)
        self.start()

    # -- the control socket ----------------------------------------------------------
    def call(self, command: str, args: dict[str, Any] | None = None,
             endpoint: str = "factoryd") -> Any:  # fmt: skip
        return control.call(paths.control_socket(self.runtime, endpoint), command, args or {},
                            timeout=CALL_TIMEOUT_S)  # fmt: skip

    def status(self) -> dict[str, Any] | None:
        try:
            reply = self.call("status")
        except control.ControlError:
            return None
        return reply if isinstance(reply, dict) else None

    def stop(self) -> int | None:
        """A clean stop (`factoryctl shutdown`, then SIGTERM, then SIGKILL to its group);
        returns factoryd's exit status."""
        proc = self.proc
        if proc is None or self.stopped_code is not None:
            return self.stopped_code
        stop_factoryd(proc, lambda: self.call("shutdown"), timeout_s=STOP_TIMEOUT_S)
        self.stopped_code = proc.returncode
        self.notify.close()
        return self.stopped_code


def _stop_with_us() -> None:
    """In the forked child: SIGTERM (a clean stop) when the soak dies, however it dies (a
    test's timeout SIGKILLs it): a factory must not outlive the soak that runs it."""
    prctl.prctl(prctl.PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants() -> list[psutil.Process]:
    """Every live process below this one (zombies not counted)."""
    try:
        found = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    alive = []
    for proc in found:
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


def reap_orphans(keep: set[int]) -> None:
    """Reap the zombies that came to us as subreaper (not the pids in `keep`: Popen's)."""
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return
    for proc in children:
        if proc.pid in keep:
            continue
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
