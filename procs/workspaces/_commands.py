"""Running a command with a hard timeout in its own process group (killed as a group)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path


class CommandFailed(Exception):
    """A command exited non-zero or ran past its timeout; the message quotes its stderr."""


def run_command(
    argv: Sequence[str], *, timeout_s: float, cwd: Path | None = None, what: str = ""
) -> str:
    """Run `argv`, wait at most `timeout_s` seconds, return its stdout.

    The child gets its own session; on timeout the whole group is SIGKILLed and reaped,
    so nothing it started outlives the call. Raises CommandFailed.
    """
    label = what or " ".join(argv[:3])
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise CommandFailed(f"{label}: {argv[0]} is not installed") from exc
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CommandFailed(f"{label}: no result after {timeout_s:g} s, killed") from exc
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-600:]
        raise CommandFailed(f"{label}: exit {proc.returncode}: {tail}")
    return out.decode(errors="replace")
