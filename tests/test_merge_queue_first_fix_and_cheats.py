"""Swarm fixes (DESIGN.md): of a group of patches fixing one red golden, the first to
land wins and the others are rejected as stale. And with --cheat-detection a patch whose
suite passes only because it deleted a test is rejected by the gauntlet, while an honest
one lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.golden_queue import commit, git, start_golden, start_queue, tiny_project
from tests.helpers.processes import Processes

pytestmark = pytest.mark.integration


def test_the_first_fix_of_a_group_wins(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    tiny_project(golden)
    red = commit(golden, {"core.py": "def add(a, b):\n    return a - b\n"}, "broken")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(golden), str(work))
    fixes = {"plus": "a + b", "swapped": "b + a", "summed": "sum((a, b))"}
    for name, body in fixes.items():
        git(work, "checkout", "-q", "-b", name, red)
        commit(work, {"core.py": f"def add(a, b):\n    return {body}\n"}, f"fix: {name}")
    gm = start_golden(procs, tmp_path, golden)
    mq = start_queue(procs, tmp_path, "--k", "3")
    assert gm.ready and mq.ready, mq.log.read_text()

    ids = [mq.call("propose", source=str(work), ref=f"refs/heads/{name}", group="fix-add")
           ["patch_id"] for name in fixes]  # fmt: skip
    done = [mq.call("wait", timeout=90, patch_id=i, timeout_s=80) for i in ids]

    assert sorted(d["state"] for d in done) == ["accepted", "rejected", "rejected"]
    (winner,) = [d for d in done if d["state"] == "accepted"]
    for loser in (d for d in done if d["state"] == "rejected"):
        assert loser["reason"] == "stale" and f"{winner['patch_id']} of group" in loser["detail"]
    assert gm.call("status")["state"] == "green"


def test_cheat_detection_rejects_a_deleted_test(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    c0 = tiny_project(golden)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(golden), str(work))
    git(work, "checkout", "-q", "-b", "cheat", c0)
    commit(work, {"tests/test_other.py": "def test_other():\n    assert True\n"}, "other")
    git(work, "rm", "-q", "tests/test_core.py")
    git(work, "commit", "-q", "-m", "drop the test that fails")
    git(work, "checkout", "-q", "-b", "honest", c0)
    commit(work, {"core.py": "def add(a, b):\n    return a + b\n\n\ndef neg(a):\n    return -a\n",
                  "tests/test_neg.py": "from core import neg\n\n\n"
                                       "def test_neg():\n    assert neg(2) + 2 == 0\n"},
           "neg")  # fmt: skip
    gm = start_golden(procs, tmp_path, golden)
    mq = start_queue(procs, tmp_path, "--k", "1", "--cheat-detection")
    assert gm.ready and mq.ready, mq.log.read_text()

    cheat = mq.call("propose", source=str(work), ref="refs/heads/cheat")
    honest = mq.call("propose", source=str(work), ref="refs/heads/honest")
    cheat = mq.call("wait", timeout=90, patch_id=cheat["patch_id"], timeout_s=80)
    honest = mq.call("wait", timeout=90, patch_id=honest["patch_id"], timeout_s=80)

    assert (cheat["state"], cheat["reason"]) == ("rejected", "gauntlet"), cheat
    assert "test_core.py" in cheat["output_tail"]
    assert honest["state"] == "accepted", honest
