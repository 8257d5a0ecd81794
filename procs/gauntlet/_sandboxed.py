"""Running a stage's command under procs.sandbox: the workspace read-only, a timeout.

Every stage that runs the change's code (or a tool over it) comes through here, so none
can alter what later stages judge: the whole workspace is bound read-only; the command
writes only to the sandbox's private /tmp. Bytecode and pytest's cache are turned off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from procs import sandbox
from procs.gauntlet._config import GauntletConfig

MAX_OUTPUT_CHARS = 16 * 1024


@dataclass(frozen=True)
class CommandRun:
    returncode: int
    timed_out: bool
    output: str  # the tail of stdout + stderr
    duration_ms: float

    def why(self, what: str, timeout_s: float) -> str:
        """One line: how `what` ended badly."""
        if self.timed_out:
            return f"{what} timed out after {timeout_s:g} s (sandbox timeout)"
        tail = self.output.strip().splitlines()[-1:] or ["no output"]
        return f"{what} exited {self.returncode}: {tail[0][:300]}"


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """PATH from ours, HOME in the private /tmp, no bytecode, no pytest cache; no secrets."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
        "PYTEST_ADDOPTS": "-p no:cacheprovider",
    }  # fmt: skip
    env.update(extra or {})
    return env


def run_readonly(argv: Sequence[str], workspace: Path, config: GauntletConfig,
                 *, writable: Path | None = None) -> CommandRun:  # fmt: skip
    """Run `argv` in `workspace` under the sandbox, bounded by config.timeout_s. The
    workspace is read-only; with `writable` (a directory directly inside it) every other
    top-level entry is bound read-only and that one stays writable. Raises
    SandboxUnavailable (nothing ran)."""
    root = Path(workspace).resolve()
    readonly: tuple[Path, ...] = (root,)
    if writable is not None:
        keep = Path(writable).resolve()
        if keep.parent != root:
            raise ValueError(f"writable {keep} is not directly inside {root}")
        readonly = tuple(sorted(entry for entry in root.iterdir() if entry.resolve() != keep))
    policy = sandbox.SandboxPolicy(
        workspace=root, readonly_paths=readonly, timeout_s=config.timeout_s,
        memory_mb=config.memory_mb, mode=config.sandbox,
    )  # fmt: skip
    done = sandbox.run(list(argv), policy, env=command_env())
    output = (done.stdout + done.stderr).decode(errors="replace")[-MAX_OUTPUT_CHARS:]
    return CommandRun(done.returncode, done.timed_out, output, done.duration_ms)
