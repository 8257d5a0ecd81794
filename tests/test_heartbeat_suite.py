"""One heartbeat suite run on an export of a commit: a commit git cannot export is no
verdict (SuiteUnavailable), never red or green; a run leaves nothing behind, in golden
or in its scratch directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from procs.heartbeat.suite import SuiteUnavailable, run_on
from tests.helpers.loop_repos import make_project
from tests.helpers.repos import git

SUITE = ("env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", sys.executable, "-m", "pytest", "-q")


def test_a_commit_that_cannot_be_exported_is_no_verdict(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "golden")
    with pytest.raises(SuiteUnavailable, match="git archive"):
        run_on(golden, "f" * 40, SUITE, tmp_path / "runs", timeout_s=60, mode="none")
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_run_reads_golden_and_leaves_nothing_behind(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "golden")
    head = git(golden, "rev-parse", "HEAD").strip()
    verdict = run_on(golden, head, SUITE, tmp_path / "runs", timeout_s=60, mode="bwrap")
    assert (verdict.green, verdict.hash, verdict.error) == (True, head, "")
    assert list((tmp_path / "runs").iterdir()) == []
    assert git(golden, "status", "--porcelain", "--ignored") == ""
