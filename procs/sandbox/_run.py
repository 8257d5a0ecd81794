"""run(): one command under a SandboxPolicy, to its end or its timeout, output collected.

The command runs in the caller's process group (a supervisor's killpg of the caller takes
it too). At the timeout, bwrap is SIGKILLed: its PID namespace goes with it, every
process inside killed by the kernel. In mode "none" there is no namespace: the command's
process tree (as psutil sees it at that moment) is killed instead.
"""

from __future__ import annotations

import contextlib
import math
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from procs.sandbox._bwrap import command_prefix
from procs.sandbox._policy import SandboxPolicy, SandboxResult

DRAIN_AFTER_KILL_S = 5.0


def run(
    argv: Sequence[str],
    policy: SandboxPolicy,
    *,
    env: Mapping[str, str],
    stdin: bytes | None = None,
    cwd: Path | None = None,
) -> SandboxResult:
    """Run `argv` under `policy`; return how it ended.

    `env` is the command's whole environment; `stdin` is fed to it (else /dev/null);
    `cwd` (default: the workspace) must lie inside the workspace. Blocks until the command
    ends or policy.timeout_s passes, then up to DRAIN_AFTER_KILL_S more to collect what it
    wrote (output is held in memory whole). Raises SandboxUnavailable (nothing was
    started), ValueError for an empty argv or a cwd outside the workspace, OSError when
    the sandbox itself cannot be started. Leaves nothing running on any way out.
    """
    if not argv:
        raise ValueError("argv is empty")
    directory = policy.workspace if cwd is None else Path(cwd).resolve()
    if directory != policy.workspace and policy.workspace not in directory.parents:
        raise ValueError(f"cwd {str(cwd)!r} is outside the workspace {policy.workspace}")
    full_argv = [*command_prefix(policy), *argv]
    began = time.monotonic()
    process = subprocess.Popen(
        full_argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), cwd=directory,
    )  # fmt: skip
    timeout = None if math.isinf(policy.timeout_s) else policy.timeout_s
    timed_out = False
    try:
        stdout, stderr = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(process, policy.mode)
        stdout, stderr = _drain(process)
    except BaseException:
        _kill(process, policy.mode)
        process.wait()
        raise
    return SandboxResult(
        returncode=process.returncode, stdout=stdout, stderr=stderr, timed_out=timed_out,
        duration_ms=(time.monotonic() - began) * 1000.0,
    )  # fmt: skip


def _kill(process: subprocess.Popen[bytes], mode: str) -> None:
    """SIGKILL the sandbox: bwrap (its PID namespace dies with it), or in mode "none" the
    command and every descendant it has now."""
    victims: list[psutil.Process] = []
    if mode == "none":
        with contextlib.suppress(psutil.Error):
            victims = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGKILL)
    for victim in victims:
        with contextlib.suppress(psutil.Error):
            victim.kill()


def _drain(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """What the killed command wrote; empty if something outside our reach still holds
    its pipes after DRAIN_AFTER_KILL_S (mode "none" only: a process that left the tree)."""
    try:
        return process.communicate(timeout=DRAIN_AFTER_KILL_S)
    except subprocess.TimeoutExpired:
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        process.wait()
        return b"", b""
