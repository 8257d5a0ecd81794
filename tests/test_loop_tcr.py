"""TCR's git side on real repos: a red test commit and its implementation fold into one
green commit; a failed implementation is reverted to the red commit (the auditor's tests
stay, the implementer's files go, ignored files stay); an interrupted phase resets to its
start commit; changes to tests or harness files are found whatever their kind."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from procs.loop import git, tcr
from tests.helpers import repos
from tests.helpers.loop_repos import make_project, write

pytestmark = pytest.mark.integration  # runs git

TEST_MUL = "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "ws")


def red_commit(project: Path) -> str:
    write(
        project,
        "tests/test_mul.py",
        "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n",
    )
    return tcr.commit(project, "red: test_mul")


def test_red_and_implementation_fold_into_one_green_commit(project: Path) -> None:
    green = git.head(project)
    red = red_commit(project)
    write(
        project,
        "calc.py",
        "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
    )
    wip = tcr.commit(project, "wip: mul, unverified")
    assert git.commits_between(project, green) == [red, wip]
    new = tcr.commit(project, "green: mul", onto=green)
    assert git.commits_between(project, green) == [new]
    shown = repos.git(project, "show", "--name-only", "--format=%s", new).split()
    assert shown == ["green:", "mul", "calc.py", "tests/test_mul.py"]
    assert git.is_clean(project)


def test_revert_keeps_the_auditors_tests_and_drops_the_implementers_work(project: Path) -> None:
    red = red_commit(project)
    write(project, "calc.py", "broken = True\n")
    write(project, "helpers/new_module.py", "X = 1\n")
    write(project, ".venv/keep.txt", "ignored: stays\n")
    tcr.commit(project, "wip")  # what an implementation attempt leaves
    write(project, "scratch.txt", "untracked\n")
    assert tcr.revert_non_test_code(project, red) == red
    assert (project / "tests/test_mul.py").exists()
    assert (project / "calc.py").read_text().startswith("def add")
    assert not (project / "helpers").exists() and not (project / "scratch.txt").exists()
    assert (project / ".venv/keep.txt").exists()
    assert git.is_clean(project)


def test_revert_refuses_a_commit_that_is_not_behind_head(project: Path) -> None:
    base = git.head(project)
    red = red_commit(project)
    tcr.reset_to(project, base)
    write(project, "other.py", "Y = 2\n")
    tcr.commit(project, "elsewhere")
    with pytest.raises(tcr.NotAncestor, match="not HEAD or an ancestor"):
        tcr.revert_non_test_code(project, red)


def test_reset_to_redoes_a_phase_from_its_start_even_beside_head(project: Path) -> None:
    green = git.head(project)
    red = red_commit(project)
    write(project, "calc.py", "def mul(a, b):\n    return a * b\n")
    folded = tcr.commit(project, "green, never persisted", onto=green)  # then SIGKILL
    assert not git.is_ancestor(project, red, folded)
    assert tcr.reset_to(project, red) == red
    assert (project / "calc.py").read_text().startswith("def add")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: (p / "tests/test_calc.py").unlink(), ["tests/test_calc.py"]),
        (lambda p: write(p, "tests/test_calc.py", "def test_add():\n    pass\n"),
         ["tests/test_calc.py"]),
        (lambda p: write(p, "conftest.py", "collect_ignore = ['tests']\n"), ["conftest.py"]),
        (lambda p: write(p, "pytest.ini", "[pytest]\naddopts = -k nothing\n"), ["pytest.ini"]),
        (lambda p: write(p, "pkg/thing_test.py", "\n"), ["pkg/thing_test.py"]),
        (lambda p: write(p, "calc.py", "def add(a, b):\n    return 5\n"), []),
    ],
    ids=["deleted", "weakened", "conftest", "pytest-ini", "named-test", "code-only"],
)  # fmt: skip
def test_touched_tests_finds_every_test_and_harness_change(
    project: Path, change: object, expected: list[str]
) -> None:
    red = red_commit(project)
    assert callable(change)
    change(project)
    assert tcr.touched_tests(project, red) == [PurePosixPath(p) for p in expected]
    tcr.commit(project, "committed too")  # found whether committed or not
    assert tcr.touched_tests(project, red) == [PurePosixPath(p) for p in expected]


def test_git_errors_name_the_command(project: Path) -> None:
    with pytest.raises(git.GitError, match=r"rev-parse .* exit 128") as caught:
        git.resolve(project, "no-such-branch")
    assert caught.value.returncode == 128
    with pytest.raises(git.GitError, match=r"commit .* exit 1"):
        tcr.commit(project, "empty")


def test_reset_to_quits_a_rebase_a_crash_left_half_done(project: Path) -> None:
    base = git.head(project)
    write(project, "calc.py", "A = 1\n")
    theirs = tcr.commit(project, "theirs")
    tcr.reset_to(project, base)
    write(project, "calc.py", "B = 2\n")
    ours = tcr.commit(project, "ours")
    with pytest.raises(git.GitError, match="rebase"):
        git.git(project, "rebase", theirs)  # conflicts and stops half way
    assert git.rebase_in_progress(project)
    assert tcr.reset_to(project, ours) == ours
    assert not git.rebase_in_progress(project) and git.is_clean(project)
