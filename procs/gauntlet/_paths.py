"""Which paths are tests or test harness: the same rules as procs/loop/paths.py and the
agent's role locks, restated (a library under procs/ does not import a process kind);
tests/test_gauntlet_paths.py checks that they agree.

A test path has a directory `tests` or `test` on it, or is named `test_*.py`, `*_test.py`
or `conftest.py`. A harness path decides how tests run or what Python loads first.
"""

from __future__ import annotations

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
    name = relative.name
    return (
        name in HARNESS_FILES
        or name.endswith((".pth", ".pyc", ".pyo"))
        or "__pycache__" in relative.parts
    )


def is_protected(relative: PurePosixPath) -> bool:
    """What the dynamic check takes from REV: tests, conftest files and harness files."""
    return is_test_path(relative) or is_harness_path(relative)


def shadows_machinery(relative: PurePosixPath) -> bool:
    """A module or package named like the test machinery (pytest.py, unittest/...)."""
    first = relative.parts[0] if len(relative.parts) > 1 else relative.name
    stem = first.removesuffix(".py")
    return stem in MACHINERY_MODULES and (len(relative.parts) > 1 or first.endswith(".py"))
