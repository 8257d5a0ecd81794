"""No red golden (issue 14): 20 patches proposed at once, 5 breaking the suite and 3
conflicting with golden. Golden ends with exactly the 12 good ones, and every golden
commit passes its suite (each one checked out and run). Real git, the real services as
processes, real pytest in the sandbox, K = 3 (speculative: failures discard the runs
behind them; 3 keeps that waste small on two cores)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.golden_queue import (
    commit,
    git,
    start_golden,
    start_queue,
    suite_passes,
    tiny_project,
)
from tests.helpers.processes import Processes

pytestmark = pytest.mark.integration


def make_patches(golden: Path, work: Path, base: str) -> dict[str, tuple[str, str]]:
    """Branches in `work` on `base`: name -> (kind, branch)."""
    git(work.parent, "clone", "-q", str(golden), str(work))
    made = {}
    for i in range(20):
        kind = "bad" if i % 4 == 1 else "conflict" if i in (2, 10, 18) else "good"
        branch = f"patch-{i}"
        git(work, "checkout", "-q", "-b", branch, base)
        if kind == "good":
            files = {
                f"pkg_{i}.py": f"VALUE = {i}\n",
                f"tests/test_pkg_{i}.py": f"from pkg_{i} import VALUE\n\n\n"
                f"def test_value():\n    assert VALUE == {i}\n",
            }
        elif kind == "bad":
            files = {
                f"pkg_{i}.py": f"VALUE = {i}\n",
                f"tests/test_pkg_{i}.py": f"from pkg_{i} import VALUE\n\n\n"
                f"def test_value():\n    assert VALUE == -1\n",
            }
        else:
            files = {"VERSION": f"conflicting {i}\n"}
        commit(work, files, f"{kind} patch {i}")
        made[f"{kind}-{i}"] = (kind, branch)
    return made  # fmt: skip


def test_twenty_patches_land_exactly_the_twelve_good_ones(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    c0 = tiny_project(golden)
    work = tmp_path / "work"
    patches = make_patches(golden, work, c0)
    gm = start_golden(procs, tmp_path, golden)
    assert gm.ready, gm.log.read_text()
    # golden moved on since the patches were made: VERSION changed (the 3 now conflict)
    git(work, "checkout", "-q", "-b", "moved", c0)
    c1 = commit(work, {"VERSION": "2\n"}, "version 2")
    assert gm.call("advance", to=c1, expected_head=c0, source=str(work), green=True)["hash"] == c1
    mq = start_queue(procs, tmp_path, "--k", "3")
    assert mq.ready, mq.log.read_text()

    names = list(patches)
    random.Random(14).shuffle(names)

    def propose(name: str) -> tuple[str, Any]:
        return name, mq.call("propose", source=str(work), ref=f"refs/heads/{patches[name][1]}",
                             key=name, title=name)  # fmt: skip

    with ThreadPoolExecutor(len(names)) as pool:
        proposed = dict(pool.map(propose, names))
    verdicts = {name: mq.call("wait", timeout=120, patch_id=entry["patch_id"], timeout_s=110)
                for name, entry in proposed.items()}  # fmt: skip

    states = {name: (v["state"], v["reason"]) for name, v in verdicts.items()}
    expected = {name: {"good": ("accepted", ""), "bad": ("rejected", "tests"),
                       "conflict": ("rejected", "conflict")}[kind]
                for name, (kind, _) in patches.items()}  # fmt: skip
    wrong = {name: {k: verdicts[name][k] for k in ("state", "reason", "detail", "output_tail")}
             for name in states if states[name] != expected[name]}  # fmt: skip
    assert wrong == {}, mq.log.read_text()[-3000:]

    head = gm.call("get_hash")["hash"]
    history = git(golden, "rev-list", "--first-parent", head).split()
    assert len(history) == 2 + 12 and history[-2:] == [c1, c0]
    assert git(golden, "rev-list", "--count", head) == str(len(history))  # linear
    tracked = set(git(golden, "ls-tree", "-r", "--name-only", head).split())
    good = {n.split("-")[1] for n, (kind, _) in patches.items() if kind == "good"}
    assert {f for f in tracked if f.startswith("pkg_")} == {f"pkg_{i}.py" for i in good}
    assert (golden / "VERSION").read_text() == "2\n"  # the work tree follows the branch

    def red(revs: list[str]) -> list[str]:  # one scratch work tree per checker
        scratch = tmp_path / f"check-{revs[0]}"
        return [rev for rev in revs if not suite_passes(golden, rev, scratch)]

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(red, [history[0::2], history[1::2]])) == [[], []]

    for name, v in verdicts.items():
        landed = mq.call("landed", patch_id=v["patch_id"])
        assert landed["landed"] is (v["state"] == "accepted")
        if v["reason"] == "tests":
            assert "assert" in mq.call("show", patch_id=v["patch_id"])["output"], name
    queue = mq.call("queue")
    assert queue["entries"] == [] and queue["golden"]["hash"] == head
    assert gm.call("status")["state"] == "green"
