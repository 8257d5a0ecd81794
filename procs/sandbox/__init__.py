"""The sandbox for agent-written code: a command under bubblewrap (Debian `bubblewrap`).

A shared library, not a process kind: TCR test runs, gauntlet stages, agent terminals and
mutator tests call it in their own process. Under a `SandboxPolicy` the workspace is
read-write, the rest of the filesystem read-only (and chosen paths inside the workspace
read-only again: a role's tests and harness files), /tmp and /dev are private, /run and
the factory's runtime dir are empty (no control socket in reach), there is no network,
the command dies with its caller, stays in the caller's process group, and has a memory
limit (RLIMIT_AS via prlimit) and, through run(), a wall-clock timeout.

    run(argv, policy, env=..., stdin=None) -> SandboxResult   to the end or the timeout
    command_prefix(policy) -> argv prefix                     for callers that spawn
    sandbox_status(mode) -> dict                              for status output

Where bwrap is missing or cannot create namespaces, both refuse with SandboxUnavailable
(nothing is run) unless the operator set mode "none": then commands run without
isolation, the limits still apply, and sandbox_status says so. The flags and their
reasons are in _bwrap.py; run()'s kill on timeout in _run.py.
"""

from procs.sandbox._bwrap import command_prefix, sandbox_status, usable_bwrap
from procs.sandbox._policy import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    SANDBOX_MODES,
    SandboxPolicy,
    SandboxResult,
    SandboxUnavailable,
    default_mode,
    runtime_hidden_paths,
)
from procs.sandbox._run import run

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "SANDBOX_MODES",
    "SandboxPolicy",
    "SandboxResult",
    "SandboxUnavailable",
    "command_prefix",
    "default_mode",
    "run",
    "runtime_hidden_paths",
    "sandbox_status",
    "usable_bwrap",
]
