"""Which workspace paths are tests or harness: one set of rules (procs.testfiles) for the
agent's role locks, the loop's TCR checks and the gauntlet, so that an implementer
cannot pass one check and fail another."""

from __future__ import annotations

from pathlib import PurePosixPath

from procs import testfiles
from procs.agent import roles


def test_the_role_locks_use_the_shared_rules() -> None:
    assert roles.is_test_path is testfiles.is_test_path  # type: ignore[attr-defined]
    assert roles.is_harness_path is testfiles.is_harness_path  # type: ignore[attr-defined]


def test_test_and_harness_paths() -> None:
    tests = ["tests/a.py", "pkg/test/x.py", "test_a.py", "a_test.py", "src/conftest.py"]
    harness = ["pytest.ini", "pyproject.toml", "setup.cfg", "x.pth", "m.pyc", "__pycache__/m"]
    neither = ["src/a.py", "testing.py", "tests.py", "test_.txt", "README.md"]
    assert all(testfiles.is_test_path(PurePosixPath(p)) for p in tests)
    assert all(testfiles.is_harness_path(PurePosixPath(p)) for p in harness)
    for p in neither:
        assert not testfiles.is_protected(PurePosixPath(p)), p


def test_protected_keeps_order_and_catches_git() -> None:
    found = testfiles.protected(
        [PurePosixPath(p) for p in ("a.py", "tests/x.py", ".git/hooks/pre-commit", "tox.ini")]
    )
    assert [str(p) for p in found] == ["tests/x.py", ".git/hooks/pre-commit", "tox.ini"]


def test_modules_named_like_the_machinery_shadow_it() -> None:
    shadows = testfiles.shadows_machinery
    assert shadows(PurePosixPath("pytest.py")) and shadows(PurePosixPath("_pytest/python.py"))
    assert shadows(PurePosixPath("unittest/__init__.py"))
    assert not shadows(PurePosixPath("src/pytest_helpers.py"))
    assert not shadows(PurePosixPath("pytest"))  # a file without .py is not a module
