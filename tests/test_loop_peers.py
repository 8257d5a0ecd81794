"""A loop's start waits, bounded, for a peer that is restarting (procs/loop/peers.py).

Found by the chaos soak (bench/chaos.py): a loop started while the merge queue was being
restarted exited 2 ("--lander merge_queue: no merge queue answers", bad input), a failed
start that cost its bead an attempt; with --lander auto it would have landed by
fast-forward, past the golden master. Here the peer is a real control server on a real
socket that starts listening only once the loop has found it down.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipc import control
from procs.loop import peers, service
from procs.loop import workspace as workspaces
from procs.loop.service import BadInput, _choose_lander, _state_waiting
from tests.helpers.control_server import serving
from tests.helpers.late_server import LateServer


@pytest.fixture
def late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LateServer]:
    server = LateServer(tmp_path / "merge_queue.sock")
    monkeypatch.setattr(control, "call", server.call)  # every caller of the module sees it
    yield server
    server.close()


def test_a_peer_that_comes_up_while_waited_for_is_found(late: LateServer) -> None:
    peers.await_peer(late.path, timeout=10)
    assert late.failures == 1 and late.up


def test_an_error_reply_is_an_answer(tmp_path: Path) -> None:
    def refuse(command: str, args: dict[str, Any]) -> Any:
        raise control.RequestRefused(f"unknown command {command!r}", "unknown_command")

    with serving(tmp_path / "peer.sock", refuse):
        peers.await_peer(tmp_path / "peer.sock", timeout=10)


def test_nothing_listening_is_reported_after_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(control.DaemonNotRunning, match="nothing is listening"):
        peers.await_peer(tmp_path / "absent.sock", timeout=0.3)


@pytest.mark.parametrize("lander", ["merge_queue", "auto"])
def test_a_restarting_merge_queue_is_the_lander(late: LateServer, lander: str) -> None:
    late.path.touch()  # a merge queue SIGKILLed leaves its socket file: the tree has one
    chosen = _choose_lander(argparse.Namespace(lander=lander), late.path.parent)
    assert chosen == "merge_queue" and late.failures == 1


def test_no_merge_queue_in_the_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "PEER_WAIT_S", 0.3)
    assert _choose_lander(argparse.Namespace(lander="auto"), tmp_path) == "fast_forward"
    with pytest.raises(BadInput, match="no merge queue answers"):
        _choose_lander(argparse.Namespace(lander="merge_queue"), tmp_path)


def test_a_workspace_manager_killed_mid_call_is_waited_for_and_asked_again(
    late: LateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its socket answered the wait, then it died before the loop's call: the start
    waits for it again and asks once more (bench/chaos.py: a failed start otherwise)."""
    late.path.touch()  # the manager's socket file, left by the SIGKILL
    via = workspaces.WorkspaceSource(manager_socket=late.path, clone_root=late.path.parent,
                                     owner_pid=1)  # fmt: skip
    calls: list[bool] = []

    def state(plan: Any, store: Any, via: Any) -> Any:
        calls.append(late.up)
        if len(calls) == 1:
            late.down()  # killed between the wait and the call
            late.path.touch()  # its socket file stays
            raise workspaces.WorkspaceUnavailable("workspace manager workspaces.list: gone")
        return ("state", "lease")

    monkeypatch.setattr(service, "_state", state)
    got: Any = _state_waiting(None, None, via)  # type: ignore[arg-type]
    assert got == ("state", "lease")
    assert calls == [True, True]  # each call made while the manager answered
    assert late.failures == 2  # down at the first wait, and again after the kill
