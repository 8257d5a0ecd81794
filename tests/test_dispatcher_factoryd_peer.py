"""The dispatcher's view of factoryd's loop children (procs/dispatcher/peers.py), against
a control server standing in for factoryd (TEST DOUBLE): a loop factoryd is (re)starting
is live, so the dispatcher waits for it instead of resuming it a second time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipc import paths
from procs.dispatcher.peers import FactorydPeer
from tests.helpers.control_server import serving


def _child(cid: str, loop_id: str, state: str, pid: int | None) -> dict[str, Any]:
    start = f"procs.loop.service:main(--bead, {loop_id.partition('.')[0]}, --loop-id, {loop_id})"
    return {"id": cid, "type": "worker", "state": state, "pid": pid, "start": start}


def test_a_starting_loop_is_live_and_a_stopped_one_is_not(tmp_path: Path) -> None:
    """Found by bench/chaos.py: factoryd answered status while it restarted a killed
    loop; the loop showed "stopped", the dispatcher resumed it, and two processes ran
    one loop (a bead claimed twice)."""
    runtime = tmp_path / "run"
    paths.private_dir(runtime)
    tree = {"id": "root", "type": "supervisor", "children": [
        {"id": "loops", "type": "supervisor", "children": [
            _child("loops.1", "bd-1.1", "starting", 4242),
            _child("loops.2", "bd-2.1", "running", 4343),
            _child("loops.3", "bd-3.1", "stopped", None)]}]}  # fmt: skip
    with serving(paths.control_socket(runtime), lambda _c, _a: {"tree": tree}):
        loops = FactorydPeer(runtime, supervisor="loops", timeout_s=5,
                             start_timeout_s=5).loops()  # fmt: skip
    assert {k: (p.child_id, p.running) for k, p in loops.items()} == {
        "bd-1.1": ("loops.1", True), "bd-2.1": ("loops.2", True),
        "bd-3.1": ("loops.3", False)}  # fmt: skip
