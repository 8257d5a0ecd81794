"""A TCR suite run: real pytest in a real git repo under bubblewrap, its outcome read
from pytest's exit status and junit report, and the red check of DESIGN.md: a new test
that fails in its body is a red; a collection error, a syntax error, no tests, a timeout,
an error in a fixture or a broken old test is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.loop import git
from procs.loop.suite import Case, SuiteRun, judge_red, run_suite, tcr_policy
from tests.helpers.loop_repos import TEST_COMMAND, make_project, write
from tests.helpers.sandbox import bwrap_unusable

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    """Skip, naming what is missing, where bubblewrap cannot sandbox (probed without our
    code, on first use rather than at import)."""
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "ws")


def run(project: Path, timeout_s: float = 60.0) -> SuiteRun:
    return run_suite(project, TEST_COMMAND, tcr_policy(project, timeout_s=timeout_s))


@pytest.fixture
def before(project: Path) -> SuiteRun:
    green = run(project)
    assert green.green, green.output
    return green


def test_a_green_run_reports_each_test_and_leaves_the_workspace_clean(
    project: Path, before: SuiteRun
) -> None:
    assert before.cases == {"tests.test_calc::test_add": Case.PASSED}
    assert before.exit_code == 0 and before.why_not_green() == ""
    assert git.is_clean(project), git.git(project, "status", "--porcelain")


@pytest.mark.parametrize(
    "body",
    [
        "assert calc.add(2, 2) == 5",  # a failing assertion
        "assert calc.mul(2, 3) == 6",  # a missing attribute
        "import pytest\n    with pytest.raises(ValueError):\n        calc.add(1, 'x')",
    ],
    ids=["assertion", "missing-attribute", "does-not-raise"],
)
def test_a_new_test_failing_in_its_body_is_a_valid_red(
    project: Path, before: SuiteRun, body: str
) -> None:
    write(project, "tests/test_new.py", f"import calc\n\n\ndef test_new():\n    {body}\n")
    after = run(project)
    assert judge_red(before, after) is None, after.output
    assert after.with_outcome(Case.FAILED) == ["tests.test_new::test_new"]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import calc_that_does_not_exist\n\n\ndef test_x():\n    pass\n", "collection"),
        ("def test_x(:\n    pass\n", "collection or syntax error"),
        ("import pytest\n\n\n@pytest.fixture\ndef broken():\n    raise RuntimeError('setup')"
         "\n\n\ndef test_x(broken):\n    pass\n", "errors outside test bodies"),
        ("import calc\n\n\ndef test_x():\n    assert calc.add(1, 1) == 2\n", "pass already"),
    ],
    ids=["collection-error", "syntax-error", "fixture-error", "passes-already"],
)  # fmt: skip
def test_what_is_not_a_red(project: Path, before: SuiteRun, source: str, reason: str) -> None:
    write(project, "tests/test_new.py", source)
    verdict = judge_red(before, run(project))
    assert verdict is not None and reason in verdict


def test_no_tests_at_all_is_not_a_red(tmp_path: Path) -> None:
    project = make_project(tmp_path / "ws")
    (project / "tests" / "test_calc.py").unlink()
    git.commit_all(project, "no tests")
    after = run(project)
    assert after.exit_code == 5
    assert "no tests were collected" in str(judge_red(after, after))


def test_breaking_a_test_that_passed_is_not_a_red(project: Path, before: SuiteRun) -> None:
    write(project, "tests/test_new.py", "import calc\n\n\ndef test_new():\n    calc.mul\n")
    write(project, "calc.py", "def add(a, b):\n    return a - b\n")
    verdict = judge_red(before, run(project))
    assert verdict is not None and "tests.test_calc::test_add" in verdict


def test_a_run_past_its_timeout_is_killed_and_not_a_red(project: Path, before: SuiteRun) -> None:
    write(project, "tests/test_new.py",
          "import time\n\n\ndef test_slow():\n    time.sleep(120)\n")  # fmt: skip
    after = run(project, timeout_s=3.0)
    assert after.timed_out and not after.green
    assert "timed out" in str(judge_red(before, after))
    assert git.is_clean(project) is False  # only the test file we wrote
    assert [p.name for p in git.changed_paths(project, "HEAD")] == ["test_new.py"]


def test_code_under_test_cannot_write_git_hooks_or_its_tests(project: Path) -> None:
    write(project, "calc.py", """\
        import pathlib

        refused = []
        for target in (".git/hooks/pre-commit", "tests/test_calc.py", "pytest.ini"):
            try:
                pathlib.Path(target).write_text("exit 0\\n")
            except OSError as exc:
                refused.append(f"REFUSED {target} {exc.strerror}")
        pathlib.Path("refused.log").write_text("\\n".join(refused))


        def add(a, b):
            return a + b
        """)  # fmt: skip
    result = run(project)
    assert result.green, result.output
    log = (project / "refused.log").read_text()
    assert log.count("REFUSED") == 3 and "Read-only file system" in log, log
    assert not (project / ".git/hooks/pre-commit").exists()
    assert [str(p) for p in git.changed_paths(project, "HEAD")] == ["calc.py", "refused.log"]
