"""The workspace manager (procs.workspaces.service) as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from ipc import control, paths
from tests.waiting import wait_until


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    runtime: Path
    log: Path

    @property
    def socket(self) -> Path:
        return paths.control_socket(self.runtime, "workspace_manager")

    def call(self, command: str, args: dict | None = None) -> dict:
        return control.call(self.socket, command, args, timeout=30)

    def events(self, name: str) -> list[dict]:
        lines = self.log.read_text().splitlines()
        return [e for e in map(orjson.loads, lines) if e.get("event") == name]

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=30)


def start_service(tmp_path: Path, *extra: str) -> Service:
    """Start a manager with runtime dir tmp_path/run; return once it logged "ready"."""
    runtime = tmp_path / "run"
    log = tmp_path / f"manager-{len(list(tmp_path.glob('manager-*.log')))}.log"
    argv = [
        sys.executable, "-m", "procs.workspaces.service",
        "--runtime-dir", str(runtime), "--state-dir", str(tmp_path / "state"), *extra,
    ]  # fmt: skip
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stderr=err, start_new_session=True)
    service = Service(proc, runtime, log)

    def ready() -> bool:
        assert proc.poll() is None, f"manager exited {proc.returncode}: {log.read_text()}"
        return bool(service.events("ready"))

    wait_until(ready, timeout=30, what="workspace manager ready")
    return service
