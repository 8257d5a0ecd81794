"""The loop's test/harness path rules are procs.testfiles, the rules the agent's role
locks use: one set for both, or an implementer could pass one check and fail the other."""

from __future__ import annotations

from pathlib import PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from procs import testfiles
from procs.agent import roles as roles_module
from procs.loop import paths

PARTS = [
    "tests", "test", "src", "pkg", "test_a.py", "a_test.py", "conftest.py", "a.py",
    "pytest.ini", "pyproject.toml", "setup.cfg", "x.pth", "m.pyc", "__pycache__",
    "sitecustomize.py", "testing", "tests.py", "test_.py", ".coveragerc", "noxfile.py",
]  # fmt: skip


@given(st.lists(st.sampled_from(PARTS), min_size=1, max_size=4))
def test_the_loop_and_the_roles_classify_paths_alike(parts: list[str]) -> None:
    path = PurePosixPath(*parts)
    assert paths.is_test_path(path) == testfiles.is_test_path(path)
    assert paths.is_harness_path(path) == testfiles.is_harness_path(path)


def test_the_loop_the_roles_and_the_gauntlet_share_one_set_of_rules() -> None:
    assert paths.is_test_path is testfiles.is_test_path is roles_module.is_test_path
    assert paths.is_harness_path is testfiles.is_harness_path is roles_module.is_harness_path


def test_protected_keeps_order_and_catches_git() -> None:
    found = paths.protected(
        [PurePosixPath(p) for p in ("a.py", "tests/x.py", ".git/hooks/pre-commit", "tox.ini")]
    )
    assert [str(p) for p in found] == ["tests/x.py", ".git/hooks/pre-commit", "tox.ini"]
