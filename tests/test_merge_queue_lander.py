"""MergeQueueLander against the real services: a loop's tested commits land (Pushed at
the golden commit, an ancestor of golden HEAD), proposing again after a crash is the
same patch, a conflict sends the loop to rebase, a rebased loop lands, and a patch that breaks
the suite comes back as PushError with the queue's reason and output."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ipc import paths
from ipc.control import RequestRefused
from procs.loop import FactoryLoopState
from procs.loop import lander as lander_module
from procs.loop.events import PushConflict, Pushed, PushError, RebaseConflict, Rebased
from procs.loop.lander import MergeQueueLander
from tests.helpers.control_server import serving
from tests.helpers.golden_queue import commit, git, start_golden, start_queue, tiny_project
from tests.helpers.processes import Processes
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def loop_on(golden: Path, tmp_path: Path, name: str, files: dict[str, str]) -> FactoryLoopState:
    workspace = tmp_path / name
    git(tmp_path, "clone", "-q", str(golden), str(workspace))
    base = git(workspace, "rev-parse", "HEAD")
    commit(workspace, files, f"green: {name}")
    return FactoryLoopState(loop_id=name, bead_id=f"bead-{name}", attempt=1,
                            workspace=str(workspace), golden_hash=base)  # fmt: skip


def test_the_loop_lands_rebases_and_hears_why(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    tiny_project(golden)
    good = loop_on(golden, tmp_path, "good", {"a.py": "A = 1\n"})
    clash = loop_on(golden, tmp_path, "clash", {"VERSION": "clash\n"})
    breaks = loop_on(golden, tmp_path, "breaks", {"core.py": "def add(a, b):\n    return 0\n"})
    gm = start_golden(procs, tmp_path, golden)
    mq = start_queue(procs, tmp_path, "--k", "2")
    assert gm.ready and mq.ready, mq.log.read_text()
    lander = MergeQueueLander(tmp_path / "run", verdict_timeout_s=90)

    landed = lander.land(good)
    assert landed == Pushed(head=git(Path(good.workspace), "rev-parse", "HEAD"))
    assert lander.land(good) == landed  # a loop killed before it recorded Pushed
    (entry,) = mq.call("queue")["recent"]
    assert mq.call("landed", patch_id=entry["patch_id"])["landed"] is True
    assert mq.call("landed", key=good.loop_id)["landed_hash"] == landed.head  # by loop id

    later = loop_on(golden, tmp_path, "later", {"b.py": "B = 1\n"})  # on the landed head
    work = tmp_path / "mover"  # golden moves on (through the master: its only writer)
    git(tmp_path, "clone", "-q", str(golden), str(work))
    moved = commit(work, {"VERSION": "2\n"}, "version 2")
    gm.call("advance", to=moved, expected_head=landed.head, source=str(work), green=True)

    conflict = lander.land(clash)
    assert isinstance(conflict, PushConflict) and "(conflict)" in conflict.reason
    assert isinstance(lander.rebase(clash), RebaseConflict)  # the same lines: it fails

    rebased = lander.rebase(later)
    assert isinstance(rebased, Rebased) and rebased.golden_hash == moved
    later = replace(later, golden_hash=moved)
    assert lander.land(later) == Pushed(head=rebased.head)  # on HEAD: a fast-forward

    refused = lander.land(breaks)
    assert isinstance(refused, PushError)
    assert "(tests)" in refused.reason and "assert" in refused.reason
    assert gm.call("get_hash")["hash"] == rebased.head


def test_a_patch_refused_on_a_red_golden_is_rebased_once_golden_is_green(
    tmp_path: Path, procs: Processes
) -> None:
    """Golden is red (someone else's broken commit): the loop's good patch fails the
    suite on golden's own red test. The loop is not failed for it: the lander waits for
    golden to be green (a fix lands), then says PushConflict, so the loop rebases onto
    the fixed golden, and there its patch lands."""
    golden = tmp_path / "golden"
    tiny_project(golden)
    commit(golden, {"core.py": "def add(a, b):\n    return a - b\n"}, "broken")
    good = loop_on(golden, tmp_path, "good", {"a.py": "A = 1\n"})
    fixer = tmp_path / "fixer"
    git(tmp_path, "clone", "-q", str(golden), str(fixer))
    fix = commit(fixer, {"core.py": "def add(a, b):\n    return a + b\n"}, "fix add")
    gm = start_golden(procs, tmp_path, golden)
    mq = start_queue(procs, tmp_path, "--k", "2")
    assert gm.ready and mq.ready, mq.log.read_text()
    assert gm.call("status")["state"] == "red"
    lander = MergeQueueLander(tmp_path / "run", verdict_timeout_s=120)
    outcome: list[object] = []
    landing = threading.Thread(target=lambda: outcome.append(lander.land(good)))
    landing.start()
    wait_until(lambda: [r["reason"] for r in mq.call("queue")["recent"]] == ["tests"],
               timeout=90, what="the good patch refused on the red golden")  # fmt: skip
    assert landing.is_alive()  # not a failed push: waiting for green
    fixing = mq.call("propose", source=str(fixer), ref=fix, key="fix")
    assert mq.call("wait", timeout=90, patch_id=fixing["patch_id"], timeout_s=80)["state"] == (
        "accepted")  # fmt: skip
    landing.join(timeout=60)
    (conflict,) = outcome
    assert isinstance(conflict, PushConflict) and "green again" in conflict.reason
    rebased = lander.rebase(good)
    assert isinstance(rebased, Rebased) and rebased.golden_hash == fix
    assert lander.land(replace(good, golden_hash=fix)) == Pushed(head=rebased.head)


def test_the_wait_for_green_outlasts_a_restarting_golden_and_a_verdict_still_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by bench/chaos.py: a golden master restarting (no answer), or a fix whose
    verdict had not come yet ("unknown"), was taken for "not red": the loop rebased onto
    a golden still red, or gave up. Only golden's "green" ends the wait (a stand-in for
    the golden master: TEST DOUBLE)."""
    monkeypatch.setattr(lander_module, "GOLDEN_POLL_S", 0.01)
    runtime = tmp_path / "run"
    paths.private_dir(runtime)
    answers: list[str | None] = [None, "red", None, "unknown", "green"]
    seen: list[str | None] = []

    def golden(_command: str, _args: dict[str, Any]) -> Any:
        state = answers[min(len(seen), len(answers) - 1)]
        seen.append(state)
        if state is None:
            raise RequestRefused("restarting", "unavailable")
        return {"state": state, "hash": "c0ffee" * 6}

    lander = MergeQueueLander(runtime)
    with serving(paths.control_socket(runtime, "golden"), golden):
        assert lander._green_by(time.monotonic() + 30) is True
        assert seen == answers  # it waited through each, and stopped at green
        answers[:] = ["red"]
        seen.clear()
        assert lander._green_by(time.monotonic() + 0.2) is False  # bounded
