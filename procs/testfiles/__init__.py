"""Which paths of a workspace are tests or test harness: one set of rules for everyone
who protects tests (the agent's role locks, the loop's TCR checks, the gauntlet's cheat
detection). A shared library, not a process kind.

A path is a test path when a directory on it is `tests` or `test`, or its file name is
`test_*.py`, `*_test.py` or `conftest.py`. A harness path decides how tests run or what
Python loads first (pytest.ini, tox.ini, setup.cfg, pyproject.toml, noxfile.py,
.coveragerc, sitecustomize.py, usercustomize.py, *.pth, *.pyc, *.pyo, __pycache__).
Paths are relative to the workspace (PurePosixPath).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

TEST_DIRS = frozenset({"tests", "test"})
HARNESS_FILES = frozenset(
    {
        "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "noxfile.py", ".coveragerc",
        "sitecustomize.py", "usercustomize.py",
    }
)  # fmt: skip
# Modules a project file must never shadow: the test machinery itself.
MACHINERY_MODULES = frozenset({"pytest", "_pytest", "pluggy", "unittest", "py", "doctest"})


def is_test_path(relative: PurePosixPath) -> bool:
    """A test file (by directory or by name)."""
    name = relative.name
    if any(part in TEST_DIRS for part in relative.parts[:-1]):
        return True
    return (
        (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


def is_test_module(relative: PurePosixPath) -> bool:
    """A file pytest collects tests from by default (test_*.py or *_test.py)."""
    name = relative.name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def is_harness_path(relative: PurePosixPath) -> bool:
    """A file that decides how tests run or what Python imports first."""
    name = relative.name
    return (
        name in HARNESS_FILES
        or name.endswith((".pth", ".pyc", ".pyo"))
        or "__pycache__" in relative.parts
    )


def is_protected(relative: PurePosixPath) -> bool:
    """A test, conftest or harness file."""
    return is_test_path(relative) or is_harness_path(relative)


def protected(paths: Iterable[PurePosixPath]) -> list[PurePosixPath]:
    """The test and harness paths among `paths` (and anything under .git), in order."""
    return [path for path in paths if is_protected(path) or ".git" in path.parts]


def shadows_machinery(relative: PurePosixPath) -> bool:
    """A module or package named like the test machinery (pytest.py, unittest/...)."""
    first = relative.parts[0] if len(relative.parts) > 1 else relative.name
    stem = first.removesuffix(".py")
    return stem in MACHINERY_MODULES and (len(relative.parts) > 1 or first.endswith(".py"))


__all__ = [
    "HARNESS_FILES",
    "MACHINERY_MODULES",
    "TEST_DIRS",
    "is_harness_path",
    "is_protected",
    "is_test_module",
    "is_test_path",
    "protected",
    "shadows_machinery",
]
