"""The agent process itself under the sandbox (procs.sandbox, bubblewrap), for one role.

Real agents write files themselves once a permission is granted, and an agent in a mode
that approves by itself (or a bug in one) never asks: so the process that holds the
model's tools runs where its role's limits are the kernel's. Its command is prefixed so
that:
- the workspace is read-write and the rest of the filesystem read-only; /tmp is private;
- the role's locked paths (procs.agent.locked_paths: for the implementer, tests/ and the
  harness files) are bound read-only over the workspace, so a write there fails with
  EROFS whoever asks for it; a path that does not exist yet cannot be bound (a new test
  file outside a test directory is caught by the loop's diff check instead);
- the agent's private HOME (its config, its session store) is bound read-write;
- it dies with its parent, in the caller's process group, with an address-space limit.

What is NOT isolated (status says so): the network. bwrap either shares the host's
network namespace or gives an empty one, where 127.0.0.1 is refused; the agent must
reach the model gateway on 127.0.0.1, so it keeps the host's network, and with it
everything else the host can reach. The locks are per role, so a sandboxed agent serves
one role: a kept agent is one process per role in a loop (a session per turn).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from procs.agent.locked_paths import locked_paths
from procs.agent.roles import RolePolicy
from procs.sandbox import SandboxPolicy, command_prefix

# Node reserves large address ranges (V8's heap cage, WebAssembly): RLIMIT_AS counts them.
AGENT_MEMORY_MB = 64 * 1024
NOT_ISOLATED = (
    "network: the agent shares the host's network namespace (it must reach the model "
    "gateway on 127.0.0.1; bwrap offers no namespace with only that)"
)


def sandboxed_command(
    command: Sequence[str],
    *,
    workspace: Path,
    policy: RolePolicy,
    home: Path | None = None,
    mode: str = "bwrap",
    memory_mb: int = AGENT_MEMORY_MB,
) -> list[str]:
    """`command` prefixed to run under bwrap with `policy`'s role locks (see the module
    docstring). `home`: a directory bound read-write besides the workspace (the agent's
    private HOME). Mode "none" gives only the memory limit. Raises SandboxUnavailable
    (bwrap or prlimit cannot run here), TooManyPaths (the workspace is too large to lock
    path by path), ValueError (a bad workspace or limit)."""
    sandbox = SandboxPolicy(
        workspace=workspace, readonly_paths=locked_paths(policy, workspace),
        timeout_s=math.inf, memory_mb=memory_mb, network=True, mode=mode,
    )  # fmt: skip
    prefix = command_prefix(sandbox)
    if mode != "none" and (tool := _tool_root_under_tmp(command[0])) is not None:
        end = prefix.index("--")  # the agent's own install, hidden by the private /tmp
        prefix[end:end] = ["--ro-bind", tool, tool]
    if mode != "none" and home is not None:
        # bwrap's own options end at the first "--"; the HOME (outside the workspace) is
        # bound last, after the private /tmp that would hide it.
        end = prefix.index("--")
        home_dir = str(home.resolve())
        prefix[end:end] = ["--bind", home_dir, home_dir]
    return [*prefix, *command]


def _tool_root_under_tmp(program: str) -> str | None:
    """Where the agent's program really lives when that is under /tmp (a checkout's
    `.ci/node`): its node_modules when it is an npm package, else its directory."""
    found = shutil.which(program)
    if found is None:
        return None
    real = Path(found).resolve()
    if not real.is_relative_to("/tmp"):
        return None
    for parent in real.parents:
        if parent.name == "node_modules":
            return str(parent)
    return str(real.parent)
