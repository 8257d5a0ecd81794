"""The bubblewrap command line for a policy, and whether bubblewrap works here.

The sandbox (bwrap 0.8 flags, in order; later binds win):
    --die-with-parent --unshare-pid --unshare-ipc [--unshare-net] --cap-drop ALL
    --ro-bind / /  --dev /dev  --proc /proc  --tmpfs /tmp  [--tmpfs HIDDEN ...]
    --bind WS WS  [--ro-bind P P ...]  --  prlimit --as=BYTES --  COMMAND...
The whole filesystem is read-only, the workspace read-write, the role's paths inside it
read-only again; /dev and /tmp are private; no network (an empty network namespace, so
even 127.0.0.1 is refused). Capabilities are dropped: as root, CAP_SYS_ADMIN could remount
a read-only bind writable. A PID namespace makes the sandbox one unit: when bwrap dies
(killed by a timeout, or its parent died) the kernel kills everything inside, however the
command forked or setsid'd. There is deliberately no --new-session: bwrap stays in the
caller's session and process group, so the caller's killpg reaches it (a TIOCSTI escape
needs a controlling terminal, which supervised children do not have). The memory limit
is RLIMIT_AS, set by prlimit(1) inside the sandbox (it counts address space, not
resident memory: runtimes that reserve large virtual areas need a higher limit).
A workspace under /tmp keeps working (it is bound after the private /tmp), but its parent
directories then exist only in that private /tmp: a write there succeeds and vanishes.
So does a toolchain under /tmp (a venv made with `python3 -m venv /tmp/v`, a PATH entry):
the interpreter's prefixes and the PATH directories that live under /tmp are bound again,
read-only, after the private /tmp, so the command finds the same programs as its caller.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from procs.sandbox._policy import SandboxPolicy, SandboxUnavailable

PROBE_TIMEOUT_S = 10.0
_ISOLATION = ["--die-with-parent", "--unshare-pid", "--unshare-ipc"]
_FILESYSTEM = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]


def command_prefix(policy: SandboxPolicy) -> list[str]:
    """The argv to put before a command to run it under `policy`.

    For callers that spawn the process themselves (their own timeout applies; the
    policy's timeout_s is run()'s). Mode "none" gives only the memory limit. Raises
    SandboxUnavailable when mode is "bwrap" and bwrap cannot run here, or when prlimit is
    missing. Blocks only the first time per bwrap binary (the probe, up to 10 s).
    """
    limit = [_prlimit(), f"--as={policy.memory_bytes}", "--"]
    if policy.mode == "none":
        return limit
    bwrap = usable_bwrap()
    argv = [bwrap, *_ISOLATION]
    if not policy.network:
        argv.append("--unshare-net")
    argv += ["--cap-drop", "ALL", *_FILESYSTEM]
    for hidden in policy.hidden_paths or ():  # before the binds: a workspace inside comes back
        if hidden.is_dir():
            argv += ["--tmpfs", str(hidden)]
    for tool_dir in toolchain_under_tmp():
        argv += ["--ro-bind", tool_dir, tool_dir]
    workspace = str(policy.workspace)
    argv += ["--bind", workspace, workspace]
    for path in policy.readonly_paths:
        if path.exists():
            argv += ["--ro-bind", str(path), str(path)]
    return [*argv, "--", *limit]


def toolchain_under_tmp(path_var: str | None = None) -> list[str]:
    """The interpreter's prefixes and PATH directories that lie under /tmp (hidden by
    the private /tmp unless bound again), outermost first, without duplicates; for an
    npm `node_modules/.bin` entry, the whole node_modules (its links point there)."""
    found: set[str] = set()
    entries = (path_var if path_var is not None else os.environ.get("PATH", "")).split(":")
    for raw in (sys.prefix, sys.base_prefix, sys.exec_prefix, *entries):
        if not raw:
            continue
        path = Path(raw).resolve()
        if path.name == ".bin" and path.parent.name == "node_modules":
            # npm's .bin holds symlinks into the packages beside it: bind them all
            path = path.parent
        if path.is_relative_to("/tmp") and path != Path("/tmp") and path.is_dir():
            found.add(str(path))
    outer = sorted(found, key=len)
    return [p for p in outer if not any(p != q and p.startswith(q + "/") for q in outer)]


def usable_bwrap() -> str:
    """The path of a bwrap on PATH that can create our namespaces; else SandboxUnavailable."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bwrap (Debian package bubblewrap) is not on PATH; agent code is not run "
            'unsandboxed unless the operator sets sandbox = "none"'
        )
    why = _probe(found)
    if why is not None:
        raise SandboxUnavailable(
            f"{found} cannot create the sandbox's namespaces here ({why}); agent code is "
            'not run unsandboxed unless the operator sets sandbox = "none"'
        )
    return found


def sandbox_status(mode: str = "bwrap") -> dict[str, Any]:
    """For status output: the mode, whether commands can run, with what, or why not.

    {"mode", "available", "bwrap" (path or None), "version", "memory_limit", "reason"}.
    """
    found = shutil.which("bwrap")
    status: dict[str, Any] = {
        "mode": mode, "available": True, "bwrap": found,
        "version": _version(found) if found else None,
        "memory_limit": "prlimit --as" if shutil.which("prlimit") else None, "reason": None,
    }  # fmt: skip
    try:
        _prlimit()
        if mode == "none":
            status["reason"] = 'sandbox = "none": agent code runs without isolation'
        else:
            usable_bwrap()
    except SandboxUnavailable as exc:
        status.update(available=False, reason=str(exc))
    return status


def _prlimit() -> str:
    found = shutil.which("prlimit")
    if found is None:
        raise SandboxUnavailable("prlimit (util-linux) is not on PATH: no memory limit can be set")
    return found


@functools.cache
def _probe(bwrap: str) -> str | None:
    """None when `bwrap` runs `true` with our namespaces; else why not (cached per path)."""
    argv = [bwrap, *_ISOLATION, "--unshare-net", "--cap-drop", "ALL", *_FILESYSTEM, "true"]
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[:300]
        return f"exit status {done.returncode}: {message or 'no message'}"
    return None


@functools.cache
def _version(bwrap: str) -> str | None:
    try:
        done = subprocess.run(
            [bwrap, "--version"], capture_output=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.decode(errors="replace").strip()
    return text.split()[-1] if text else None
