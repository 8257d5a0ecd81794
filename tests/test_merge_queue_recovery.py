"""The queue recovers from what it does not see coming: golden moved by another writer
(its advance is refused by the compare-and-swap; it reads HEAD, rebuilds on it, retests
and lands there), and its own SIGKILL mid-test (the patch waits in SQLite and lands
after the restart)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.golden_queue import commit, git, start_golden, start_queue, tiny_project
from tests.helpers.processes import Processes

pytestmark = pytest.mark.integration


def test_a_golden_moved_under_the_queue_is_a_refused_cas_then_a_rebuild(
    tmp_path: Path, procs: Processes
) -> None:
    golden = tmp_path / "golden"
    c0 = tiny_project(golden)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(golden), str(work))
    git(work, "checkout", "-q", "-b", "patch", c0)
    tip = commit(work, {"a.py": "A = 1\n"}, "a patch")
    git(work, "checkout", "-q", "-b", "other", c0)
    moved = commit(work, {"VERSION": "2\n"}, "another writer")
    gm = start_golden(procs, tmp_path, golden)
    mq = start_queue(procs, tmp_path, "--k", "2", "--reconcile-s", "300")  # reads HEAD once
    assert gm.ready and mq.ready, mq.log.read_text()
    gm.call("advance", to=moved, expected_head=c0, source=str(work), green=True)

    entry = mq.call("propose", source=str(work), ref="refs/heads/patch")  # built on c0
    done = mq.call("wait", timeout=90, patch_id=entry["patch_id"], timeout_s=80)

    assert done["state"] == "accepted", mq.log.read_text()[-3000:]
    assert git(golden, "rev-parse", f"{done['landed_hash']}^") == moved
    assert git(golden, "rev-parse", "main") == done["landed_hash"] != tip
    assert mq.call("status")["counts"]["cas_refused"] == 1
    assert [e["type"] for e in mq.events("advance_refused")] == ["stale_head"]


def test_a_killed_queue_lands_its_patches_after_a_restart(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    c0 = tiny_project(golden)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(golden), str(work))
    tips = []
    for name in ("one", "two"):
        git(work, "checkout", "-q", "-b", name, c0)
        tips.append(commit(work, {f"{name}.py": "X = 1\n"}, name))
    gm = start_golden(procs, tmp_path, golden)
    mq = start_queue(procs, tmp_path, "--k", "2")
    assert gm.ready and mq.ready, mq.log.read_text()
    ids = [mq.call("propose", source=str(work), ref=f"refs/heads/{n}")["patch_id"]
           for n in ("one", "two")]  # fmt: skip
    procs.kill(mq.proc)  # SIGKILL to its process group: its sandboxed runs die with it

    again = start_queue(procs, tmp_path, "--k", "2")
    assert again.ready, again.log.read_text()
    done = [again.call("wait", timeout=90, patch_id=i, timeout_s=80) for i in ids]
    assert [d["state"] for d in done] == ["accepted", "accepted"], again.log.read_text()
    head = gm.call("get_hash")["hash"]
    assert all(again.call("landed", patch_id=i)["landed"] for i in ids)
    assert git(golden, "rev-list", "--count", head) == "3"
