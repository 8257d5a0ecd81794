"""FastForwardLander on real repos: a compare-and-swap landing on a bare golden, the
checked-out branch of a person's repository moved with its work tree, a moved golden is
a conflict, and landing twice (a loop killed before it recorded Pushed) is one landing."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.loop import FactoryLoopState, git, tcr
from procs.loop.events import PushConflict, Pushed, PushError
from procs.loop.lander import FastForwardLander
from tests.helpers import repos
from tests.helpers.loop_repos import make_project, write

pytestmark = pytest.mark.integration  # runs git


def loop_on(golden: Path, tmp_path: Path) -> FactoryLoopState:
    workspace = tmp_path / "ws"
    repos.git(tmp_path, "clone", "-q", str(golden), str(workspace))
    base = git.head(workspace)
    write(workspace, "calc.py", "def add(a, b):\n    return b + a\n")
    tcr.commit(workspace, "green: commutative")
    return FactoryLoopState(loop_id="l", bead_id="b", attempt=1, workspace=str(workspace),
                            golden_hash=base)  # fmt: skip


def test_lands_on_a_bare_golden_once(tmp_path: Path) -> None:
    golden = tmp_path / "golden.git"
    repos.git(tmp_path, "clone", "-q", "--bare", str(make_project(tmp_path / "src")), str(golden))
    state = loop_on(golden, tmp_path)
    tip = git.head(Path(state.workspace))
    lander = FastForwardLander(golden)
    assert lander.land(state) == Pushed(head=tip)
    assert git.resolve(golden, "refs/heads/main") == tip
    assert lander.land(state) == Pushed(head=tip)  # replayed after a crash


def test_moves_a_checked_out_branch_with_its_work_tree(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "person")
    state = loop_on(golden, tmp_path)
    assert isinstance(FastForwardLander(golden).land(state), Pushed)
    assert "b + a" in (golden / "calc.py").read_text()
    assert git.is_clean(golden)


def test_local_changes_in_the_persons_repo_are_not_overwritten(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "person")
    state = loop_on(golden, tmp_path)
    write(golden, "calc.py", "# my edit, not committed\n")
    outcome = FastForwardLander(golden).land(state)
    assert isinstance(outcome, PushError) and "merge" in outcome.reason
    assert (golden / "calc.py").read_text() == "# my edit, not committed\n"


def test_a_moved_golden_is_a_conflict(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "person")
    state = loop_on(golden, tmp_path)
    write(golden, "other.py", "Z = 3\n")
    tcr.commit(golden, "someone else landed")
    outcome = FastForwardLander(golden).land(state)
    assert isinstance(outcome, PushConflict) and state.golden_hash in outcome.reason
