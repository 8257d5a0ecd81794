"""Bisection carried out (procs/synapse/culprit.py): real commits, real suite runs in k
local workspaces (no workspace manager: shared clones), in-process. The culprit is found
from the last green commit or, with none known, from the window; a last green commit
that fails now too names no culprit; the workspaces are gone afterwards."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from procs.synapse.bisect import rounds_bound
from procs.synapse.culprit import BisectSettings, Cancelled, Found, find_culprit
from tests.helpers.golden_queue import TEST_COMMAND, commit, tiny_project

pytestmark = pytest.mark.integration


def _history(repo: Path, n: int, breaks_at: int) -> list[str]:
    out = []
    for i in range(1, n + 1):
        files = {f"notes/{i}.txt": f"{i}\n"}
        if i == breaks_at:
            files["core.py"] = "def add(a, b):\n    return a - b\n"
        out.append(commit(repo, files, f"change {i}"))
    return out


def _settings(command: str = TEST_COMMAND, workers: int = 2) -> BisectSettings:
    return BisectSettings(workers, 64, tuple(command.split()), 60.0, "none")


def _find(tmp: Path, repo: Path, bad: str, good: str | None, s: BisectSettings, *,
          cancelled: threading.Event | None = None) -> Found:  # fmt: skip
    return find_culprit(repo, bad, good, s, runtime=tmp / "run", state=tmp / "state",
                        name="t", owner_pid=0,
                        cancelled=cancelled or threading.Event())  # fmt: skip


def test_the_culprit_is_found_from_the_last_green_commit_or_without_one(tmp_path: Path) -> None:
    repo = tmp_path / "golden"
    green = tiny_project(repo)
    commits = _history(repo, 6, breaks_at=3)
    found = _find(tmp_path, repo, commits[-1], green, _settings())
    assert (found.culprit, found.suspects, found.workers) == (commits[2], 7, 2)
    assert found.rounds <= rounds_bound(7, 2) and found.note == ""
    assert not list((tmp_path / "state").glob("synapse-workspaces/*"))

    unknown = _find(tmp_path, repo, commits[-1], None, _settings(workers=3))
    assert unknown.culprit == commits[2] and unknown.suspects == 7


def test_a_last_green_commit_that_fails_now_names_no_culprit(tmp_path: Path) -> None:
    repo = tmp_path / "golden"
    green = tiny_project(repo)
    commits = _history(repo, 4, breaks_at=0)
    found = _find(tmp_path, repo, commits[-1], green, _settings("false"))
    assert found.culprit == "" and "fails now too" in found.note


def test_a_cancelled_bisection_stops_before_its_next_round(tmp_path: Path) -> None:
    repo = tmp_path / "golden"
    green = tiny_project(repo)
    commits = _history(repo, 4, breaks_at=2)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        _find(tmp_path, repo, commits[-1], green, _settings(), cancelled=cancelled)
    assert not list((tmp_path / "state").glob("synapse-workspaces/*"))
