"""A mutator with a green fix waits for a merge queue that is being restarted.

Found by the chaos soak (bench/chaos.py): the merge queue was SIGKILLed as the swarm's
two right fixes were proposed; both mutators gave up ("propose: nothing is listening"),
the generation ended with nothing landed, and golden stayed red for good. Here the
merge queue is a real control server on a real socket, down when first called.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipc import control
from procs.synapse.generation import Generation
from procs.synapse.mutator import propose
from procs.synapse.prompt import Failure
from tests.helpers.late_server import LateServer

GEN = Generation("abc123def456-1", Failure("tests/test_a.py", "assert 5 == 4", "a" * 40, "", ""),
                 repo="/nonexistent", test_command=("pytest",), suite_timeout_s=60,
                 sandbox="none", size=4)  # fmt: skip


class Queue:
    """The merge queue's side: propose queues the entry, wait decides it."""

    def __init__(self) -> None:
        self.proposed: list[dict[str, Any]] = []
        self.waits = 0

    def __call__(self, command: str, args: dict[str, Any]) -> Any:
        if command == "propose":
            self.proposed.append(args)
            return {"patch_id": "p-1", "state": "queued"}
        if command == "wait":
            self.waits += 1
            return {"patch_id": args["patch_id"], "state": "accepted"}
        return {}


@pytest.fixture
def queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LateServer, Queue]]:
    handler = Queue()
    late = LateServer(tmp_path / "merge_queue.sock", handler)
    monkeypatch.setattr(control, "call", late.call)
    yield late, handler
    late.close()


def test_a_fix_proposed_while_the_queue_restarts_is_proposed_once_it_is_back(
    tmp_path: Path, queue: tuple[LateServer, Queue]
) -> None:
    late, handler = queue
    entry = propose(tmp_path, GEN, 2, tmp_path, "f" * 40, decision_timeout_s=30)
    assert entry["state"] == "accepted"
    assert late.failures >= 1  # it was down when the mutator came
    assert [p["group"] for p in handler.proposed] == [GEN.group]  # proposed exactly once


def test_a_queue_restarting_during_the_wait_is_waited_for(
    tmp_path: Path, queue: tuple[LateServer, Queue], monkeypatch: pytest.MonkeyPatch
) -> None:
    late, handler = queue
    control.await_answer(late.path, timeout=10)  # up before the proposal
    killed: list[bool] = []

    def killed_at_first_wait(path: Any, command: str, *args: Any, **kw: Any) -> Any:
        if command == "wait" and not killed:
            killed.append(True)
            late.down()  # SIGKILLed while the mutator waits for the decision
        return late.call(path, command, *args, **kw)

    monkeypatch.setattr(control, "call", killed_at_first_wait)
    entry = propose(tmp_path, GEN, 2, tmp_path, "f" * 40, decision_timeout_s=30)
    assert killed and late.failures >= 2  # down at the start, and again at the wait
    assert entry["state"] == "accepted" and len(handler.proposed) == 1
