"""The golden master as a process: advance is a compare-and-swap (a moved head, an
untested tree and a non-fast-forward are refused; a branch lock a killed git left is
cleared at start), startup fails clearly without a usable repository or host, and a
red golden starts red and says why."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ipc import control
from supervisor.ctl import cli
from tests.helpers.golden_queue import commit, git, start_golden, tiny_project
from tests.helpers.processes import Processes

pytestmark = pytest.mark.integration


def test_advance_is_a_compare_and_swap(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    c0 = tiny_project(golden)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(golden), str(work))
    c1 = commit(work, {"VERSION": "2\n"}, "two")
    c2 = commit(work, {"VERSION": "3\n"}, "three")
    git(work, "checkout", "-q", "-b", "side", c0)
    side = commit(work, {"VERSION": "side\n"}, "side")
    (golden / ".git" / "refs" / "heads" / "main.lock").write_text("")  # a killed git's
    gm = start_golden(procs, tmp_path, golden)
    assert gm.ready, gm.log.read_text()
    assert [e["path"] for e in gm.events("stale_lock_removed")] == [
        str(golden / ".git" / "refs" / "heads" / "main.lock")
    ]
    assert gm.call("get_hash") == {"hash": c0, "branch": "main", "repo": str(golden),
                                   "state": "green"}  # fmt: skip

    def advance(**args: object) -> str:
        try:
            return str(gm.call("advance", source=str(work), **args)["hash"])
        except control.RemoteError as exc:
            return f"refused: {exc.type}"

    assert advance(to=c1, expected_head=c0, green=False) == "refused: not_tested"
    assert advance(to=c2, expected_head=c1, green=True) == "refused: stale_head"
    assert advance(to=c1, expected_head=c0, green=True) == c1
    assert advance(to=c2, expected_head=c0, green=True) == "refused: stale_head"  # moved
    assert advance(to=side, expected_head=c1, green=True) == "refused: not_descendant"
    assert git(golden, "rev-parse", "main") == c1
    assert (golden / "VERSION").read_text() == "2\n"  # its work tree follows
    status = gm.call("status")
    assert status["hash"] == c1 and status["state"] == "green"
    assert [m["hash"] for m in status["moves"][:1]] == [c1]
    assert status["counts"]["refused"] == 4


@pytest.mark.parametrize("problem", ["missing", "not_git", "detached", "ram"])
def test_startup_fails_clearly(tmp_path: Path, procs: Processes, problem: str) -> None:
    repo = tmp_path / "golden"
    extra: list[str] = []
    if problem == "not_git":
        repo.mkdir()
    elif problem in ("detached", "ram"):
        c0 = tiny_project(repo)
        if problem == "detached":
            git(repo, "checkout", "-q", "--detach", c0)
        else:
            extra = ["--min-free-ram-mb", str(1 << 40)]
    gm = start_golden(procs, tmp_path, repo, *extra)
    assert gm.proc.wait(timeout=30) == 1
    (failed,) = gm.events("start_failed")
    words = {"missing": "no such directory", "not_git": "not a git repository",
             "detached": "detached HEAD", "ram": "free RAM"}[problem]  # fmt: skip
    assert words in failed["reason"], failed
    assert gm.events("ready") == []


def test_a_red_golden_starts_red_and_says_why(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    tiny_project(golden)
    red = commit(golden, {"core.py": "def add(a, b):\n    return a - b\n"}, "broken")
    gm = start_golden(procs, tmp_path, golden)
    assert gm.ready, gm.log.read_text()
    status = gm.call("status")
    assert status["state"] == "red" and status["last_failure"]["hash"] == red
    assert "assert" in status["last_failure"]["output"]
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--runtime-dir", str(gm.runtime), "golden"], out=out, err=err)
    assert code == 1, err.getvalue()
    assert "state: RED" in out.getvalue() and "last failure" in out.getvalue()


def test_a_bare_golden_runs_its_suite_in_a_temporary_worktree(
    tmp_path: Path, procs: Processes
) -> None:
    c0 = tiny_project(tmp_path / "seed")
    golden = tmp_path / "golden.git"
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "seed"), str(golden))
    gm = start_golden(procs, tmp_path, golden)
    assert gm.ready, gm.log.read_text()
    assert gm.call("get_hash") == {"hash": c0, "branch": "main", "repo": str(golden),
                                   "state": "green"}  # fmt: skip
    assert gm.call("run_suite")["green"] is True
    assert git(golden, "worktree", "list", "--porcelain").count("worktree ") == 1  # removed
