"""MergeQueueLander waits for a merge queue or golden master being restarted.

Found by the chaos soak (bench/chaos.py): a loop in Pushing found the merge queue down
(SIGKILLed a moment before, or dying while the loop waited for its verdict) and failed
("push refused: the merge queue cannot be reached"), costing its bead an attempt, though
the queue was back within seconds with the patch still in it. Here the queue is a real
control server on a real socket, down when first called; the workspace a real git repo.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipc import control
from procs.loop import FactoryLoopState, git, tcr
from procs.loop.events import Pushed
from procs.loop.lander import MergeQueueLander
from tests.helpers import repos
from tests.helpers.late_server import LateServer
from tests.helpers.loop_repos import make_project, write

pytestmark = pytest.mark.integration  # runs git

LANDED = "d" * 40


class Queue:
    def __init__(self) -> None:
        self.proposed: list[dict[str, Any]] = []

    def __call__(self, command: str, args: dict[str, Any]) -> Any:
        if command == "propose":
            self.proposed.append(args)
            return {"patch_id": "p-1", "state": "queued"}
        if command == "wait":
            return {"patch_id": "p-1", "state": "accepted", "landed_hash": LANDED}
        return {}


@pytest.fixture
def queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LateServer, Queue]]:
    (tmp_path / "run").mkdir()
    handler = Queue()
    late = LateServer(tmp_path / "run" / "merge_queue.sock", handler)
    monkeypatch.setattr(control, "call", late.call)
    yield late, handler
    late.close()


def loop_state(tmp_path: Path) -> FactoryLoopState:
    workspace = tmp_path / "ws"
    repos.git(tmp_path, "clone", "-q", str(make_project(tmp_path / "golden")), str(workspace))
    base = git.head(workspace)
    write(workspace, "calc.py", "def add(a, b):\n    return b + a\n")
    tcr.commit(workspace, "green: commutative")
    return FactoryLoopState(loop_id="b.1", bead_id="b", attempt=1, workspace=str(workspace),
                            golden_hash=base)  # fmt: skip


def test_a_queue_down_at_the_proposal_and_during_the_wait_is_waited_for(
    tmp_path: Path, queue: tuple[LateServer, Queue], monkeypatch: pytest.MonkeyPatch
) -> None:
    late, handler = queue
    killed: list[bool] = []

    def killed_at_first_wait(path: Any, command: str, *args: Any, **kw: Any) -> Any:
        if command == "wait" and not killed:
            killed.append(True)
            late.down()  # SIGKILLed while the loop waits for its verdict
        return late.call(path, command, *args, **kw)

    monkeypatch.setattr(control, "call", killed_at_first_wait)
    lander = MergeQueueLander(tmp_path / "run", verdict_timeout_s=60)
    assert lander.land(loop_state(tmp_path)) == Pushed(head=LANDED)
    assert killed and late.failures >= 2  # down at the proposal, and again at the wait
    assert [p["key"] for p in handler.proposed] == ["b.1"]  # proposed once
