"""One suite run in a working copy, in the sandbox, with a wall-clock timeout.

    run_suite(workspace, test_command, timeout_s=, mode=) -> Trial
    failing_first(test_command, workspace, file) -> the command on one test file, or None

The workspace is the sandbox's only writable place; a timeout is red. Raises
TrialUnavailable when nothing could run (no sandbox): that is no verdict, never green.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from procs import sandbox

MAX_OUTPUT_CHARS = 8 * 1024


class TrialUnavailable(RuntimeError):
    """The suite could not be run; the message says why."""


@dataclass(frozen=True)
class Trial:
    green: bool
    timed_out: bool
    exit_code: int
    duration_ms: float
    output: str  # the last MAX_OUTPUT_CHARS of stdout and stderr


def suite_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip


def failing_first(test_command: Sequence[str], workspace: Path, file: str) -> list[str] | None:
    """The test command on the failing file alone, when the command is pytest and the file
    is a file of the workspace (a quick "still red" before the whole suite); else None."""
    is_pytest = any(Path(a).name in ("pytest", "py.test") for a in test_command)
    if not file or not is_pytest or file.startswith(("-", "/")) or ".." in Path(file).parts:
        return None
    return [*test_command, file] if (workspace / file).is_file() else None


def run_suite(workspace: Path, test_command: Sequence[str], *, timeout_s: float,
              mode: str) -> Trial:  # fmt: skip
    """Blocks at most about `timeout_s`."""
    try:
        policy = sandbox.SandboxPolicy(workspace=workspace, timeout_s=timeout_s, mode=mode)
        result = sandbox.run(list(test_command), policy, env=suite_env())
    except (sandbox.SandboxUnavailable, ValueError, OSError) as exc:
        raise TrialUnavailable(f"the sandbox cannot run the suite: {exc}") from None
    output = (result.stdout + result.stderr).decode(errors="replace")[-MAX_OUTPUT_CHARS:]
    green = result.returncode == 0 and not result.timed_out
    return Trial(green, result.timed_out, result.returncode, result.duration_ms, output)
