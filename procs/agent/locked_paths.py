"""What a role may not write, as paths the sandbox binds read-only over the workspace.

The role rules (roles.py) bind fs/write_text_file; a command the agent runs through
terminal/* writes with the kernel's rules instead, so the same locks are made mounts:

implementer  test paths (tests/ and test/ directories, test_*.py, *_test.py, conftest.py)
             and harness paths (pytest.ini, tox.ini, setup.cfg, pyproject.toml, ...,
             __pycache__, *.pth) are read-only
auditor      harness paths and everything that is not a test path are read-only (a
             directory that is not a test directory is locked whole, tests nested in it
             included: stricter than roles.py, never looser)
architect    only .git
reviewer     the whole workspace
Every role: .git (file or directory, at any depth) is read-only.

Computed from the workspace as it is now, by a bounded walk that follows no symlink and
locks none (a symlink's target is locked, or not, under its own name). A path that does
not exist yet cannot be bound: a new test file created by a command is caught where the
loop checks the diff, not here. Raises TooManyPaths past MAX_ENTRIES entries walked or
MAX_LOCKED paths locked (the terminal is then refused, naming the limit).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from procs.agent.roles import RolePolicy
from procs.testfiles import TEST_DIRS, is_harness_path, is_test_path

MAX_ENTRIES = 100_000
MAX_LOCKED = 1024


class TooManyPaths(ValueError):
    """The workspace is too large to lock path by path; the message names the limit."""


def locked_paths(policy: RolePolicy, workspace: Path) -> tuple[Path, ...]:
    """The paths inside `workspace` that `policy`'s role may not write, for read-only binds."""
    root = workspace.resolve()
    if not policy.writes_tests and not policy.writes_code:
        return (root,)
    walk = _Walk(policy, root)
    walk.visit(root, PurePosixPath())
    return tuple(walk.locked)


class _Walk:
    def __init__(self, policy: RolePolicy, root: Path) -> None:
        self.policy = policy
        self.root = root
        self.locked: list[Path] = []
        self.entries = 0

    def visit(self, directory: Path, relative: PurePosixPath) -> None:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            self.entries += 1
            if self.entries > MAX_ENTRIES:
                raise TooManyPaths(
                    f"workspace has more than {MAX_ENTRIES} entries to check for the role's "
                    "read-only paths (MAX_ENTRIES)"
                )
            if entry.is_symlink():
                continue
            path, rel = Path(entry.path), relative / entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if self._locks(rel, is_dir):
                self._lock(path)
            elif is_dir:
                self.visit(path, rel)

    def _locks(self, rel: PurePosixPath, is_dir: bool) -> bool:
        policy = self.policy
        if rel.name == ".git":
            return True
        if policy.writes_tests and policy.writes_code:
            return False
        if is_harness_path(rel):
            return True
        testy = rel.name in TEST_DIRS if is_dir else is_test_path(rel)
        return testy if policy.writes_code else not testy

    def _lock(self, path: Path) -> None:
        if len(self.locked) >= MAX_LOCKED:
            raise TooManyPaths(
                f"the role would lock more than {MAX_LOCKED} paths in this workspace (MAX_LOCKED)"
            )
        self.locked.append(path)
