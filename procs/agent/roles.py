"""What each role may touch: the client-side enforcement of the TDD roles.

auditor     writes tests only (the red test), never the code under test
implementer writes non-test code only, never the tests
architect   writes both
reviewer    writes nothing

A path is a test path when a directory on it is `tests` or `test`, or its file name is
`test_*.py`, `*_test.py` or `conftest.py`. A harness path configures how tests run or
what Python loads before them (pytest.ini, tox.ini, setup.cfg, pyproject.toml,
noxfile.py, .coveragerc, sitecustomize.py, usercustomize.py, *.pth, __pycache__ and
*.pyc): only a role that writes both tests and code (the architect) writes those, so an
implementer cannot switch the tests off. No `.git` (at any depth) is writable. Every
path is first confined to the workspace by `resolve_in_workspace` (no `..`, no absolute
path elsewhere, no symlink that leads out), then checked against the role.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from procs.testfiles import is_harness_path, is_test_path

MAX_PATH_BYTES = 4096


class PathRefused(PermissionError):
    """A path the role may not use; the message says which rule refused it."""


class Role(enum.StrEnum):
    AUDITOR = "auditor"
    IMPLEMENTER = "implementer"
    ARCHITECT = "architect"
    REVIEWER = "reviewer"


@dataclass(frozen=True)
class RolePolicy:
    """Per-role permissions. `may_execute` covers the agent's own shell tool and terminal/*.

    Execution is off by default: a shell can write anywhere the agent's user can, which
    would bypass the path rules; the factory runs the tests itself (TCR).
    """

    role: Role
    writes_tests: bool
    writes_code: bool
    may_execute: bool = False
    extra_kinds: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def for_role(cls, role: str | Role, *, may_execute: bool = False) -> RolePolicy:
        try:
            role = Role(role)
        except ValueError:
            known = [r.value for r in Role]
            raise ValueError(f"unknown role {role!r}; roles are {known}") from None
        tests, code = {
            Role.AUDITOR: (True, False),
            Role.IMPLEMENTER: (False, True),
            Role.ARCHITECT: (True, True),
            Role.REVIEWER: (False, False),
        }[role]
        return cls(role=role, writes_tests=tests, writes_code=code, may_execute=may_execute)


@dataclass(frozen=True)
class WorkspacePath:
    """A path confined to the workspace: `real` to open, `relative` for the role rules."""

    real: Path
    relative: PurePosixPath

    @property
    def root(self) -> Path:
        """The resolved workspace directory (`real` is `root / relative`)."""
        return self.real.parents[len(self.relative.parts) - 1]


def resolve_in_workspace(workspace: Path, raw: object) -> WorkspacePath:
    """Confine `raw` (absolute, or relative to the workspace) to the workspace.

    Raises PathRefused for: a non-string or empty path, a NUL byte, a `..` component, an
    absolute path outside the workspace, or one whose existing part resolves (through
    symlinks) outside it. A final component that is a symlink is judged by its target.
    """
    if not isinstance(raw, str) or not raw:
        raise PathRefused(f"path must be a non-empty string, got {raw!r:.80}")
    try:
        encoded = raw.encode()
    except UnicodeEncodeError:
        raise PathRefused(f"path {raw!r:.80} is not valid UTF-8 (a lone surrogate)") from None
    if "\x00" in raw or len(encoded) > MAX_PATH_BYTES:
        raise PathRefused("path contains a NUL byte or is too long")
    candidate = PurePosixPath(raw)
    if ".." in candidate.parts:
        raise PathRefused(f"path {raw!r} contains '..'")
    root = workspace.resolve()
    lexical = Path(candidate) if candidate.is_absolute() else root / candidate
    lexical = Path(os.path.normpath(lexical))
    if not _inside(lexical, root) and not _inside(lexical, workspace.absolute()):
        raise PathRefused(f"path {raw!r} is outside the workspace {root}")
    try:
        real = lexical.resolve()  # follows every symlink that exists, the last one included
    except RuntimeError as exc:  # a symlink loop (pathlib raises RuntimeError for ELOOP)
        raise PathRefused(f"path {raw!r}: {exc}") from None
    if not _inside(real, root):
        raise PathRefused(f"path {raw!r} leads outside the workspace (resolves to {real})")
    relative = PurePosixPath(real.relative_to(root).as_posix())
    if str(relative) == ".":
        raise PathRefused(f"path {raw!r} is the workspace itself, not a file")
    return WorkspacePath(real=real, relative=relative)


def check_write(policy: RolePolicy, workspace: Path, raw: object) -> WorkspacePath:
    """Confine `raw` and check that `policy`'s role may write it; raise PathRefused if not."""
    target = resolve_in_workspace(workspace, raw)
    if ".git" in target.relative.parts:  # a submodule's .git file or dir counts too
        raise PathRefused(f"{target.relative} is inside .git; no role writes there")
    if is_harness_path(target.relative) and not (policy.writes_tests and policy.writes_code):
        raise PathRefused(
            f"role {policy.role.value} may not write {target.relative}: it configures how "
            "tests run (only the architect writes it)"
        )
    testy = is_test_path(target.relative)
    if testy and not policy.writes_tests:
        raise PathRefused(f"role {policy.role.value} may not write tests ({target.relative})")
    if not testy and not policy.writes_code:
        what = "non-test code" if policy.writes_tests else "any file"
        raise PathRefused(f"role {policy.role.value} may not write {what} ({target.relative})")
    return target


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
