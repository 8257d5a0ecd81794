"""systemd/factory.example.toml is what operators start from: the whole factory. With its
paths pointed at a real small project (a golden clone, a beads export beside it, a loop
config), it must start every service, turn a ready bead into a tested commit on golden
through the dispatcher, a loop and the merge queue, close the bead, answer every
factoryctl view, and stop cleanly.

The only stand-in is the agent (a scripted in-process TEST DOUBLE, `turns` below, given
to the loop template with --agent-turns): everything else is the example as written,
the test command aside (this interpreter's pytest without the machine's plugins)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipc import ledger
from tests.helpers.example_factory import runnable_example
from tests.helpers.repos import git
from tests.helpers.sandbox import skip_without_bwrap
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

BEAD = {"id": "bd-1", "title": "double", "status": "open", "priority": 1,
        "issue_type": "task", "description": "feature.double(x) returns 2 * x",
        "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
SERVICES = {
    "bus", "signal_journal", "resource_governor", "workspaces", "llm_router", "model_gateway",
    "beads", "golden", "merge_queue", "dispatcher", "heartbeat", "metrics",
    "synapse",
}  # fmt: skip


class Turns:
    """TEST DOUBLE of the agents: one test of feature.double, then its implementation."""

    def auditor(self, turn: Any) -> Any:
        test = turn.workspace / "tests" / "test_feature.py"
        if test.exists():
            return _reply('{"status": "requirements_complete"}')
        test.write_text("def test_double():\n    import feature\n\n"
                        "    assert feature.double(4) == 8\n")  # fmt: skip
        return _reply('{"status": "test_written", "test": "test_double"}')

    def implementer(self, turn: Any) -> Any:
        (turn.workspace / "feature.py").write_text("def double(x):\n    return 2 * x\n")
        return _reply('{"status": "implemented", "summary": "double"}')

    def architect(self, turn: Any) -> Any:
        return _reply('{"status": "refactored", "summary": "nothing to do"}')

    def reviewer(self, turn: Any) -> Any:
        return _reply('{"status": "approve", "issues": []}')


def _reply(result: str) -> Any:
    from procs.loop.turns import TurnReply  # the loop process's module

    return TurnReply(f"Done.\nFACTORY_RESULT {result}")


def turns(config: Any, held: Any, **_: Any) -> Turns:
    return Turns()


def _workers(node: dict[str, Any]) -> list[dict[str, Any]]:
    if node["type"] == "worker":
        return [node]
    return [w for c in node["children"] for w in _workers(c)]


def test_the_example_factory_turns_a_bead_into_a_commit_on_golden(factoryd, tmp_path: Path
                                                                   ) -> None:  # fmt: skip
    skip_without_bwrap()  # the example runs every test under bubblewrap
    example = runnable_example(tmp_path)
    golden, beads = example.golden, example.beads
    start = git(golden, "rev-parse", "HEAD").strip()
    d = factoryd(example.text).start()
    try:
        workers = _workers(d.status()["tree"])
        assert {w["id"] for w in workers} == SERVICES
        assert all(w["state"] == "running" for w in workers)
        wait_until(lambda: d.status()["resources"] is not None, timeout=20,
                   what="the governor's ledger")  # fmt: skip
        beads.write_text(json.dumps(BEAD) + "\n")  # a bead becomes ready: inotify, then a loop

        def closed() -> bool:
            record = json.loads(beads.read_text().splitlines()[0])
            return record["status"] == "closed"

        wait_until(closed, timeout=100, what="bd-1 closed by the dispatcher")
        head = git(golden, "rev-parse", "main").strip()
        assert head != start and git(golden, "merge-base", "--is-ancestor", start, head) == ""
        assert "return 2 * x" in git(golden, "show", "main:feature.py")
        state = ["--state-dir", str(d.tmp / "state")]  # where the loops' database is
        for command in (["status"], ["llm"], ["workspaces"], ["beads"], [*state, "loops"],
                        ["queue"], ["golden"]):  # fmt: skip
            code, out, err = d.ctl(*command)
            assert code == 0, (command, out, err)
        code, out, _ = d.ctl(*state, "loops", "--json")
        assert [loop["phase"] for loop in json.loads(out)["loops"]] == ["complete"]
        # no service died and came back while we looked
        assert all(w["restarts"] == 0 for w in _workers(d.status()["tree"])
                   if w["id"] in SERVICES)  # fmt: skip
        d.stop()
        assert d.proc.returncode == 0
    finally:
        d.stop()
        ledger.destroy(d.runtime_dir)
