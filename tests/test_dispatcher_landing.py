"""Whether a loop's commit landed: the merge queue's word when it knows the loop (a
squashed landing is not the loop's own commit), else golden's ancestry; golden found
through the golden master's get_hash; a peer that cannot say is LandingUnknown, never
"not landed"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipc import control, paths
from procs.dispatcher.landing import GoldenAncestry, LandingUnknown
from tests.helpers.control_server import serving
from tests.helpers.loop_repos import make_project, write
from tests.helpers.repos import git


def side_commit(golden: Path) -> str:
    """A commit that is not on main."""
    git(golden, "checkout", "-q", "-b", "side")
    write(golden, "side.py", "x = 1\n")
    git(golden, "add", "side.py")
    git(golden, "commit", "-q", "-m", "side")
    commit = git(golden, "rev-parse", "HEAD").strip()
    git(golden, "checkout", "-q", "main")
    return commit


def test_without_a_queue_golden_ancestry_decides(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "golden")
    head, side = git(golden, "rev-parse", "HEAD").strip(), side_commit(golden)
    landing = GoldenAncestry(tmp_path / "run", repo=golden)
    assert landing.landed("bd-1.1", head) is True
    assert landing.landed("bd-1.1", side) is False
    with pytest.raises(LandingUnknown):
        landing.landed("bd-1.1", "f" * 40)  # git cannot say: not "not landed"


def test_the_queue_decides_for_the_loops_it_knows(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "golden")
    side = side_commit(golden)
    runtime = tmp_path / "run"
    paths.private_dir(runtime)
    asked: list[dict[str, Any]] = []

    def queue(command: str, args: dict[str, Any]) -> Any:
        asked.append(args)
        if args["key"] == "bd-1.1":
            return {"landed": True, "landed_hash": "a" * 40, "state": "accepted"}
        if args["key"] == "bd-3.1":
            raise control.RequestRefused("the queue is rebuilding", "internal")
        raise control.RequestRefused(f"no patch with key {args['key']!r}", "not_found")

    landing = GoldenAncestry(runtime, repo=golden)
    with serving(paths.control_socket(runtime, "merge_queue"), queue):
        assert landing.landed("bd-1.1", side) is True  # its squashed commit is on golden
        assert landing.landed("bd-2.1", side) is False  # not the queue's: golden says no
        with pytest.raises(LandingUnknown, match="rebuilding"):
            landing.landed("bd-3.1", side)
    assert [a["key"] for a in asked] == ["bd-1.1", "bd-2.1", "bd-3.1"]


def test_golden_is_where_the_golden_master_says(tmp_path: Path) -> None:
    golden = make_project(tmp_path / "golden")
    head = git(golden, "rev-parse", "HEAD").strip()
    runtime = tmp_path / "run"
    paths.private_dir(runtime)
    landing = GoldenAncestry(runtime)
    with pytest.raises(LandingUnknown, match="golden master"):
        landing.landed("bd-1.1", head)
    answer = {"hash": head, "branch": "main", "repo": str(golden), "state": "green"}
    with serving(paths.control_socket(runtime, "golden"), lambda _c, _a: answer):
        assert landing.landed("bd-1.1", head) is True
    assert landing.branch == "main"


def test_red_is_golden_masters_word_and_a_silent_one_holds_nothing_back(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    paths.private_dir(runtime)
    landing = GoldenAncestry(runtime)
    assert landing.red() is None  # no golden master here
    answer: dict[str, Any] = {"hash": "c0ffee" * 6, "state": "red"}

    def golden(command: str, _args: dict[str, Any]) -> Any:
        if answer.get("refuse"):
            raise control.RequestRefused("busy", "internal")
        assert command == "status"
        return answer

    with serving(paths.control_socket(runtime, "golden"), golden):
        assert landing.red() == "golden is red at c0ffeec0ffee: nothing but a fix can land"
        answer["state"] = "green"
        assert landing.red() is None
        answer.update(state="red", refuse=True)
        assert landing.red() is None  # cannot say: nothing held back
