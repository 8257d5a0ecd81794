"""What a sandboxed command may touch and how long and large it may run: checked data.

`SandboxPolicy` is validated once, when it is made: every error names the field and the
value. Paths are resolved (symlinks followed) so that what bwrap binds is what was
checked; a read-only path must lie inside the workspace.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ipc import paths

SANDBOX_MODES = ("bwrap", "none")
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_MB = 4096


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here (no bwrap on PATH, no namespaces, no prlimit) and the
    operator did not set sandbox mode "none"; the message says what is missing."""


MODE_ENV = "FACTORY_SANDBOX"  # factoryd sets it for every child from [factory] sandbox


def default_mode() -> str:
    """The operator's sandbox mode: $FACTORY_SANDBOX (factoryd passes [factory] sandbox
    to every child), else "bwrap". An unknown value is refused by SandboxPolicy."""
    return os.environ.get(MODE_ENV) or "bwrap"


def runtime_hidden_paths(workspace: Path) -> tuple[Path, ...]:
    """/run and the factory's runtime dir, less any that is (or is inside) the workspace:
    a workspace inside one is bound again over its tmpfs."""
    found: list[Path] = []
    workspace = workspace.resolve()
    for raw in (Path("/run"), paths.runtime_dir()):
        path = raw.resolve()
        if path.is_relative_to(workspace) or any(path.is_relative_to(f) for f in found):
            continue  # the workspace's own, or already hidden
        if path != Path("/") and path.is_dir():
            found.append(path)
    return tuple(found)


@dataclass(frozen=True)
class SandboxPolicy:
    """`workspace`: read-write, the command's default cwd. `readonly_paths`: paths inside
    the workspace bound read-only over it (a path that does not exist when the command
    starts is not bound: nothing is created in the workspace to hold a mount). `timeout_s`:
    wall clock for run() (math.inf: none). `memory_mb`: the address-space limit
    (RLIMIT_AS). `network`: keep the host's network (default: none at all). `mode`:
    "bwrap", or "none" (the operator's choice: no isolation, the limits still apply).
    `hidden_paths`: absolute directories replaced by an empty tmpfs (their unix sockets
    out of reach) before the workspace is bound, so a workspace inside one stays; None
    (the default) is `runtime_hidden_paths(workspace)`: /run and the factory's runtime
    dir, so that agent-written code cannot reach factoryd's control socket or any
    service's (a network namespace does not cover filesystem unix sockets)."""

    workspace: Path
    readonly_paths: tuple[Path, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    network: bool = False
    mode: str = field(default_factory=default_mode)
    hidden_paths: tuple[Path, ...] | None = None

    def __post_init__(self) -> None:
        workspace = Path(self.workspace)
        if not workspace.is_absolute():
            raise ValueError(f"workspace must be an absolute path, got {str(workspace)!r}")
        if not workspace.is_dir():
            raise ValueError(f"workspace {str(workspace)!r} is not a directory")
        workspace = workspace.resolve()
        readonly = []
        for raw in self.readonly_paths:
            path = Path(raw)
            path = (path if path.is_absolute() else workspace / path).resolve()
            if path != workspace and workspace not in path.parents:
                raise ValueError(f"readonly path {str(raw)!r} is outside the workspace")
            readonly.append(path)
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)):
            raise ValueError(f"timeout_s must be a number of seconds, got {self.timeout_s!r}")
        if math.isnan(self.timeout_s) or self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 (math.inf for none), got {self.timeout_s}")
        if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int):
            raise ValueError(f"memory_mb must be an integer, got {self.memory_mb!r}")
        if self.memory_mb < 16:
            raise ValueError(f"memory_mb must be >= 16, got {self.memory_mb}")
        if self.hidden_paths is None:
            object.__setattr__(self, "hidden_paths", runtime_hidden_paths(workspace))
        for hidden in self.hidden_paths or ():
            if not Path(hidden).is_absolute() or Path(hidden) == Path("/"):
                raise ValueError(f"hidden path must be an absolute directory, got {hidden!r}")
        if self.mode not in SANDBOX_MODES:
            raise ValueError(f"sandbox mode must be one of {SANDBOX_MODES}, got {self.mode!r}")
        object.__setattr__(self, "workspace", workspace)
        object.__setattr__(self, "readonly_paths", tuple(readonly))
        object.__setattr__(self, "hidden_paths", tuple(Path(p) for p in self.hidden_paths or ()))

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024


@dataclass(frozen=True)
class SandboxResult:
    """How a command ended: `returncode` (negative: killed by that signal; a command
    killed inside bwrap shows as 128 + the signal, as in a shell), its output, whether the
    timeout killed it, and its wall time in milliseconds."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration_ms: float
