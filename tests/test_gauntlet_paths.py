"""The gauntlet's test and harness path rules are procs.testfiles, the ones the loop and
the agent's role locks use."""

from __future__ import annotations

from pathlib import PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from procs.gauntlet import _paths as gauntlet_paths
from procs.loop import paths as loop_paths

PARTS = st.sampled_from([
    "tests", "test", "src", "pkg", "conftest.py", "test_x.py", "x_test.py", "x.py",
    "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "noxfile.py", ".coveragerc",
    "sitecustomize.py", "usercustomize.py", "a.pth", "m.pyc", "__pycache__", "testing.py",
])  # fmt: skip


@given(st.lists(PARTS, min_size=1, max_size=4))
def test_the_gauntlet_and_the_loop_agree_on_test_and_harness_paths(parts: list[str]) -> None:
    assert gauntlet_paths.is_test_path is loop_paths.is_test_path  # one set of rules
    path = PurePosixPath(*parts)
    assert gauntlet_paths.is_test_path(path) == loop_paths.is_test_path(path)
    assert gauntlet_paths.is_harness_path(path) == loop_paths.is_harness_path(path)


def test_modules_named_like_the_machinery_shadow_it() -> None:
    shadows = gauntlet_paths.shadows_machinery
    assert shadows(PurePosixPath("pytest.py")) and shadows(PurePosixPath("_pytest/python.py"))
    assert shadows(PurePosixPath("unittest/__init__.py"))
    assert not shadows(PurePosixPath("src/pytest_helpers.py"))
    assert not shadows(PurePosixPath("pytest"))  # a file without .py is not a module
