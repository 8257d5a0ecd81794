"""Which changed paths are tests or test harness: what an implementer's diff may not touch.

The same rules as the agent's role locks (procs/agent/roles.py: is_test_path,
is_harness_path), restated here because a process kind does not import another
(tests/test_import_graph.py); tests/test_loop_paths.py checks that both agree. A path is
a test path when a directory on it is `tests` or `test`, or its name is `test_*.py`,
`*_test.py` or `conftest.py`; a harness path configures how tests run or what Python
loads first (pytest.ini, tox.ini, setup.cfg, pyproject.toml, noxfile.py, .coveragerc,
sitecustomize.py, usercustomize.py, *.pth, *.pyc, *.pyo, __pycache__).
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


def is_harness_path(relative: PurePosixPath) -> bool:
    """A file that decides how tests run or what Python imports first."""
    name = relative.name
    return (
        name in HARNESS_FILES
        or name.endswith((".pth", ".pyc", ".pyo"))
        or "__pycache__" in relative.parts
    )


def protected(paths: Iterable[PurePosixPath]) -> list[PurePosixPath]:
    """The test and harness paths among `paths` (and anything under .git), in order."""
    return [
        path for path in paths
        if is_test_path(path) or is_harness_path(path) or ".git" in path.parts
    ]  # fmt: skip
