"""Whether bubblewrap can sandbox here, found without our code; processes found by marker.

The probe runs bwrap, so it runs on first use, from a test, never at import: collecting
the suite (or running `-m "not integration"`) starts no process.

A command in the sandbox has its own PID namespace: a pid it prints means nothing out
here. Tests give such a process a marker in its command line and look for it in /proc.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest


@functools.cache
def bwrap_unusable() -> str | None:
    """None when `bwrap` runs `true` with the namespaces the sandbox uses; else why not.
    Probed once per test session (it runs bwrap, for up to 30 s)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap is not on PATH (Debian package bubblewrap)"
    argv = [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--proc", "/proc",
            "--dev", "/dev", "true"]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if done.returncode != 0:
        return f"bwrap cannot create namespaces here: {done.stderr.decode(errors='replace')}"
    return None


def sandbox_mode() -> str:
    """The mode for tests of terminal behaviour that must hold whether or not bwrap works
    here: "bwrap" where it does, else "none"."""
    return "bwrap" if bwrap_unusable() is None else "none"


def skip_without_bwrap() -> None:
    """Skip the calling test, naming why, where bwrap cannot sandbox."""
    if (reason := bwrap_unusable()) is not None:
        pytest.skip(reason)


def pids_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in (b"Z", b"X"):
            found.append(int(proc.name))
    return found
