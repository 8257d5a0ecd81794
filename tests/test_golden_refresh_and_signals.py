"""The golden master against an upstream remote (refresh fetches a fast-forward and runs
the suite on it; with --push, what landed here goes upstream; a diverged upstream is
refused), and the signals of a landing on the bus: PatchProposed, GoldenMasterUpdated,
Evolution, PatchAccepted(hash) and PatchRejected(reason)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ipc import control
from ipc.bus import Subscriber
from tests.helpers.golden_queue import commit, git, start_golden, start_queue, tiny_project
from tests.helpers.processes import Processes
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_refresh_fetches_pushes_and_refuses_divergence(tmp_path: Path, procs: Processes) -> None:
    origin = tmp_path / "origin.git"
    c0 = tiny_project(tmp_path / "seed")
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "seed"), str(origin))
    golden, other = tmp_path / "golden", tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(golden))
    git(tmp_path, "clone", "-q", str(origin), str(other))
    gm = start_golden(procs, tmp_path, golden, "--upstream", "origin", "--push")
    assert gm.ready, gm.log.read_text()

    c1 = commit(other, {"VERSION": "2\n"}, "upstream moved")
    git(other, "push", "-q", "origin", "main")
    refreshed = gm.call("refresh")
    assert (refreshed["hash"], refreshed["previous"], refreshed["moved"]) == (c1, c0, True)
    assert (golden / "VERSION").read_text() == "2\n"
    wait_until(lambda: len(gm.events("suite_run")) == 2, timeout=60, what="the suite on c1")
    assert gm.call("status")["state"] == "green"

    c2 = commit(other, {"a.py": "A = 1\n"}, "landed here")
    gm.call("advance", to=c2, expected_head=c1, source=str(other), green=True)
    assert gm.call("refresh")["pushed"] is True
    assert git(origin, "rev-parse", "main") == c2

    git(other, "reset", "-q", "--hard", c1)
    commit(other, {"b.py": "B = 1\n"}, "diverged")
    git(other, "push", "-q", "-f", "origin", "main")
    with pytest.raises(control.RemoteError) as refused:
        gm.call("refresh")
    assert refused.value.type == "diverged"
    assert gm.call("get_hash")["hash"] == c2


def until(sub: Subscriber, last: str, timeout: float = 60.0) -> dict[str, Any]:
    """Every signal received (the latest of each type) up to the first `last`."""
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while last not in seen:
        envelope = sub.recv(timeout=max(0.0, deadline - time.monotonic()))
        assert envelope is not None, f"no {last} within {timeout} s; saw {sorted(seen)}"
        seen[envelope.type] = envelope.signal
    return seen


def test_a_landing_is_announced_on_the_bus(tmp_path: Path, procs: Processes) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    procs.broker(runtime)
    sub = Subscriber(runtime)
    sub.wait_connected(timeout=30)
    golden = tmp_path / "golden"
    c0 = tiny_project(golden)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(golden), str(work))
    git(work, "checkout", "-q", "-b", "good", c0)
    commit(work, {"a.py": "A = 1\n"}, "good")
    git(work, "checkout", "-q", "-b", "bad", c0)
    commit(work, {"core.py": "def add(a, b):\n    return 0\n"}, "bad")
    gm = start_golden(procs, tmp_path, golden, bus=True)
    mq = start_queue(procs, tmp_path, "--k", "1", bus=True)
    assert gm.ready and mq.ready, mq.log.read_text()

    good = mq.call("propose", source=str(work), ref="refs/heads/good")
    seen = until(sub, "PatchAccepted")
    head = gm.call("get_hash")["hash"]
    assert seen["PatchProposed"].patch_id == good["patch_id"]
    assert "a.py" in seen["PatchProposed"].diff
    assert (seen["PatchAccepted"].patch_id, seen["PatchAccepted"].hash) == (good["patch_id"], head)
    updated = seen["GoldenMasterUpdated"]
    assert (updated.hash, updated.previous_hash) == (head, c0)
    assert seen["Evolution"].hash == head

    bad = mq.call("propose", source=str(work), ref="refs/heads/bad")
    rejected = until(sub, "PatchRejected")["PatchRejected"]
    assert (rejected.patch_id, rejected.reason) == (bad["patch_id"], "tests")
