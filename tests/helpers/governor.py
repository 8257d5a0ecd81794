"""The resource governor as a real process, and its status over its control socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from ipc import control, paths
from tests.helpers.processes import Processes
from tests.waiting import wait_until


def start_governor(procs: Processes, runtime: Path, *flags: str) -> subprocess.Popen[str]:
    """Start procs.governor.service on `runtime`; return once it answers status."""
    argv = [sys.executable, "-m", "procs.governor.service", "--runtime-dir", str(runtime)]
    proc = procs.start([*argv, *flags], stderr=subprocess.DEVNULL)
    wait_until(lambda: _status_or_none(runtime, proc), what="the governor to answer")
    return proc


def _status_or_none(runtime: Path, proc: subprocess.Popen[str]) -> dict[str, Any] | None:
    assert proc.poll() is None, f"governor exited {proc.returncode}"
    try:
        return governor_status(runtime)
    except control.DaemonNotRunning:
        return None


def governor_status(runtime: Path) -> dict[str, Any]:
    return control.call(paths.control_socket(runtime, "resource_governor"), "status", timeout=10)
