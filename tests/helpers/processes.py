"""Children in their own process groups, killed as groups at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Processes:
    """Children in their own process groups, killed as groups at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            text=True,
            start_new_session=True,
            **kw,  # type: ignore[call-overload]
        )
        self.procs.append(proc)
        return proc

    def broker(self, runtime: Path) -> subprocess.Popen[str]:
        return self.start(
            [sys.executable, "-m", "procs.bus.service", "--runtime-dir", str(runtime)],
            stderr=subprocess.DEVNULL,
        )

    def kill(self, proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> int:
        os.killpg(proc.pid, sig)
        return proc.wait(timeout=10)

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream:
                    stream.close()
