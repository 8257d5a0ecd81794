"""One suite run on a speculative build, in the sandbox, that can be cancelled.

    run = SuiteRun(slot, argv, timeout_s=600.0)
    verdict = run.run()        # in a worker thread: blocks until the end or the timeout
    run.cancel()               # from any thread: the build was discarded; kill it now
    cheat_findings(slot, base) -> [line]   # the gauntlet's static cheat detection

The cheat detection is procs.gauntlet's static part (deleted or weakened tests, rigged
harness, hardcoded expectations: AST and diff only, no code run): milliseconds. Its
dynamic part (the base's tests re-run on the patch) is a second suite run: the loop's
Verifying does it; the queue does not.

The slot's work tree is read-only inside the sandbox (pytest's cache off, no bytecode):
the same conditions as the golden master's own run, so what passed here passes there. A
timeout is a failure. A cancelled run's verdict says `cancelled` and is never used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from procs import gauntlet, sandbox

MAX_OUTPUT_CHARS = 64 * 1024


@dataclass(frozen=True)
class Verdict:
    """`green`, else `reason` says what failed: "tests" or "gauntlet" (cheat detection)."""

    green: bool
    output: str
    duration_ms: float
    timed_out: bool = False
    cancelled: bool = False
    reason: str = "tests"


def suite_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip


class SuiteRun:
    def __init__(self, slot: Path, argv: Sequence[str], *, timeout_s: float) -> None:
        self.policy = sandbox.SandboxPolicy(workspace=slot, readonly_paths=(slot,),
                                            timeout_s=timeout_s)  # fmt: skip
        self.argv = list(argv)
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._cancelled = False

    def run(self) -> Verdict:
        """Blocks until the suite ends, its timeout passes, or cancel(). Raises
        SandboxUnavailable (nothing ran) or OSError (the sandbox did not start)."""
        began = time.monotonic()
        with self._lock:
            if self._cancelled:
                return Verdict(False, "cancelled", 0.0, cancelled=True)
            self._process = subprocess.Popen(
                [*sandbox.command_prefix(self.policy), *self.argv], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=suite_env(),
                cwd=self.policy.workspace,
            )  # fmt: skip
        process, timed_out = self._process, False
        try:
            out, _ = process.communicate(timeout=self.policy.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill()
            out, _ = process.communicate()
        except BaseException:
            self._kill()
            process.wait()
            raise
        output = out.decode(errors="replace")[-MAX_OUTPUT_CHARS:]
        if timed_out:
            output += f"\n[the suite timed out after {self.policy.timeout_s} s]"
        return Verdict(
            green=process.returncode == 0 and not timed_out and not self._cancelled,
            output=output, duration_ms=(time.monotonic() - began) * 1000.0,
            timed_out=timed_out, cancelled=self._cancelled,
        )  # fmt: skip

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        self._kill()

    def _kill(self) -> None:
        """SIGKILL the sandbox (bwrap's PID namespace goes with it); in mode "none", the
        command's whole tree as it is now."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        victims: list[psutil.Process] = []
        if self.policy.mode == "none":
            with contextlib.suppress(psutil.Error):
                victims = psutil.Process(process.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        for victim in victims:
            with contextlib.suppress(psutil.Error):
                victim.kill()


def cheat_findings(slot: Path, base: str) -> list[str]:
    """The gauntlet's static findings on the change from `base` to `slot`'s work tree,
    one line each (empty: nothing found). Raises gauntlet.ChangeError."""
    change = gauntlet.Change.load(slot, base)
    return [finding.feedback() for finding in gauntlet.static_findings(change)]
