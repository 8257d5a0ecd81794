"""The dispatcher under a real factoryd, with the bus, the governor (2 loop slots), the
beads service on a JSONL export and real loop processes (a scripted in-process agent,
BeadTurns below: a test double), landing on a real golden repository:

- "17 workers for 4 beads" never happens: 4 ready beads, 2 slots: at most 2 loops live
  at any time (factoryd's own start/exit records, in order), each bead at most one live
  loop, and all 4 closed once their commits are on golden, each with its stats;
- an error is never "no work": a loop completes while the beads store cannot be read;
  the dispatcher reports the failed rounds, closes nothing and fails nothing, and closes
  the bead once the store is back;
- reconcile after a SIGKILL: the dispatcher is SIGKILLed while a loop it started is held
  and that loop's child is stopped meanwhile; the restarted dispatcher finds the claim
  whose loop is gone and resumes it with the same loop id (no second attempt);
- a dispatcher whose own records are lost adopts beads' claim and resumes its loop.
One factoryd serves the module; the tests run in order on one golden.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from ipc import control, ledger, paths
from tests.harness import ROOT, Factoryd
from tests.helpers import loop_holds
from tests.helpers.loop_repos import make_project
from tests.helpers.repos import git
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

HOLDS_ENV = loop_holds.ENV
PY = sys.executable
HOLDS_SCRIPT = ROOT / "tests" / "helpers" / "loop_holds.py"


class BeadTurns:
    """TEST DOUBLE (the loop's --agent-turns): for bead B, one test of B's own module and
    its implementation, so loops of different beads never touch the same file; the
    reviewer approves after passing the `reviewer` hold if one is armed."""

    def __init__(self, holds: Path) -> None:
        self.holds = holds

    @staticmethod
    def _module(turn: Any) -> str:
        return "feat_" + re.sub(r"\W", "_", turn.state.bead_id)

    def auditor(self, turn: Any) -> Any:
        loop_holds.hold(self.holds, "auditor")
        module = self._module(turn)
        test = turn.workspace / "tests" / f"test_{module}.py"
        if test.exists():
            return _reply('{"status": "requirements_complete"}')
        test.write_text(
            f"def test_value():\n    import {module}\n\n    assert {module}.value() == 7\n"
        )
        return _reply('{"status": "test_written", "test": "test_value"}')

    def implementer(self, turn: Any) -> Any:
        (turn.workspace / f"{self._module(turn)}.py").write_text("def value():\n    return 7\n")
        return _reply('{"status": "implemented", "summary": "value"}')

    def architect(self, turn: Any) -> Any:
        return _reply('{"status": "refactored", "summary": "nothing"}')

    def reviewer(self, turn: Any) -> Any:
        loop_holds.hold(self.holds, "reviewer")
        return _reply('{"status": "approve", "issues": []}')


def _reply(result: str) -> Any:
    from procs.loop.turns import TurnReply  # the loop process's module

    return TurnReply(f"Done.\nFACTORY_RESULT {result}")


def bead_turns(config: Any, held: Any) -> BeadTurns:
    return BeadTurns(Path(os.environ[HOLDS_ENV]))


def bead(id_: str, priority: int = 2) -> str:
    return json.dumps({"id": id_, "title": f"feature {id_}", "status": "open",
                       "description": f"feat_{id_.replace('-', '_')}.value() is 7",
                       "priority": priority, "issue_type": "task",
                       "created_at": "2026-01-01T00:00:00Z"}) + "\n"  # fmt: skip


@dataclass
class Tree:
    d: Factoryd
    beads: Path
    golden: Path
    holds: Path

    def call(self, endpoint: str, command: str, **args: Any) -> Any:
        sock = paths.control_socket(self.d.runtime_dir, endpoint)
        return control.call(sock, command, args, timeout=30)

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.beads.read_text().splitlines() if line]

    def status_of(self, bead_id: str) -> str:
        return next(str(r.get("status")) for r in self.records() if r["id"] == bead_id)

    def dispatcher_events(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.d.log().splitlines():
            if line.startswith("[dispatcher] {"):
                record = orjson.loads(line[len("[dispatcher] ") :])
                if record.get("event") == event:
                    out.append(record)
        return out

    def arm(self, name: str) -> None:
        """Arm hold `name`, forgetting the holds of earlier tests (a stopped holder
        leaves its marker)."""
        for path in self.holds.iterdir():
            path.unlink()
        loop_holds.arm(self.holds, name)

    def add(self, *ids: str) -> None:
        with self.beads.open("a") as f:
            f.write("".join(bead(i) for i in ids))

    def wait_closed(self, *ids: str, timeout: float = 120.0) -> None:
        """Until the store says closed and the dispatcher has said so too."""

        def closed() -> bool:
            said = {e["bead_id"] for e in self.dispatcher_events("loop_settled")
                    if e["outcome"] == "closed"}  # fmt: skip
            return all(i in said and self.status_of(i) == "closed" for i in ids)

        wait_until(closed, timeout=timeout, what=f"beads {ids} closed")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    tmp = tmp_path_factory.mktemp("dispatch")
    holds = tmp / "holds"
    holds.mkdir()
    golden = make_project(tmp / "golden")
    beads = tmp / "repo" / ".beads" / "issues.jsonl"
    beads.parent.mkdir(parents=True)
    beads.write_text("")
    config = tmp / "loop.toml"
    config.write_text(
        f'[loop]\ntest_command = ["{PY}", "{HOLDS_SCRIPT}", "{holds}", "--", "{PY}", "-m", '
        '"pytest", "-q"]\n'
        'agent_command = ["bead-turns-in-process"]\nsandbox = "none"\nreviewer = "agent"\n'
        "suite_timeout_s = 60\nturn_timeout_s = 60\nrefactor_interval = 50\n"
    )
    d = Factoryd(tmp, f"""
        [factory]
        preload = ["procs.loop.service", "procs.dispatcher.service"]
        [supervisor]
        strategy = "one_for_one"
        intensity = 20
        period = 60
        [[supervisor.children]]
        id = "bus"
        target = "procs.bus.service:main"
        ready = "notify"
        [[supervisor.children]]
        id = "governor"
        target = "procs.governor.service:main"
        args = ["--max-loops", "2", "--min-free-ram-mb", "0"]
        ready = "notify"
        [[supervisor.children]]
        id = "beads"
        target = "procs.beads.service:main"
        args = ["--jsonl", "{beads}", "--bd", "never", "--reconcile-s", "300"]
        ready = "notify"
        [[supervisor.children]]
        id = "loops"
        strategy = "simple_one_for_one"
        intensity = 20
        period = 60
        [[supervisor.children.children]]
        id = "loop"
        target = "procs.loop.service:main"
        args = ["--beads", "{beads}", "--repo", "{golden}", "--config", "{config}",
                "--agent-turns", "tests.test_dispatcher_service:bead_turns",
                "--slot-timeout-s", "0", "--workspaces", "clone"]
        restart = "transient"
        ready = "notify"
        start_timeout_ms = 60000
        shutdown_ms = 5000
        env = {{ {HOLDS_ENV} = "{holds}", PYTEST_DISABLE_PLUGIN_AUTOLOAD = "1" }}
        [[supervisor.children]]
        id = "dispatcher"
        target = "procs.dispatcher.service:main"
        args = ["--golden", "{golden}", "--reconcile-s", "5", "--retry-base-s", "1"]
        ready = "notify"
        shutdown_ms = 10000
    """)  # fmt: skip
    d.start()
    try:
        yield Tree(d, beads, golden, holds)
    finally:
        d.stop()
        ledger.destroy(d.runtime_dir)


def loop_lifetimes(d: Factoryd) -> list[tuple[str, str]]:
    """factoryd's start and exit records of loop children, in its order: (event, child)."""
    out = []
    for line in d.log().splitlines():
        if not line.startswith("factoryd {"):
            continue
        record = orjson.loads(line[len("factoryd ") :])
        if record.get("event") in ("child_started", "child_exited") and str(
            record.get("child", "")
        ).startswith("loops."):
            out.append((record["event"], record["child"]))
    return out


def test_four_beads_on_two_slots_never_run_more_than_two_loops(tree: Tree) -> None:
    ids = ["bd-a", "bd-b", "bd-c", "bd-d"]
    tree.add(*ids)
    tree.wait_closed(*ids)
    live, most = set(), 0
    for event, child in loop_lifetimes(tree.d):
        if event == "child_started":
            live.add(child)
        else:
            live.discard(child)
        most = max(most, len(live))
    assert most == 2  # both slots used, never a third loop
    started = tree.dispatcher_events("loop_started")
    assert sorted(e["bead_id"] for e in started) == ids  # one loop per bead, first try
    assert all(e["loop_id"] == f"{e['bead_id']}.1" for e in started)
    for record in tree.records():  # closed with the loop's stats, its commit on golden
        assert record["status"] == "closed", record
        stats = record["metadata"]["factory"]
        assert (stats["loop_id"], stats["commits"]) == (f"{record['id']}.1", 1)
        git(tree.golden, "merge-base", "--is-ancestor", stats["commit"], "main")
    status = tree.call("dispatcher", "status")
    assert status["records"]["ended_closed"] == 4 and status["records"]["running"] == 0
    closed = [e for e in tree.dispatcher_events("loop_settled") if e["outcome"] == "closed"]
    assert sorted(e["bead_id"] for e in closed) == ids
    for name in ("feat_bd_a.py", "feat_bd_b.py", "feat_bd_c.py", "feat_bd_d.py"):
        assert git(tree.golden, "show", f"main:{name}").startswith("def value")


def test_a_beads_store_error_is_never_no_work(tree: Tree) -> None:
    tree.arm("reviewer")
    tree.add("bd-e")
    wait_until(lambda: loop_holds.is_held(tree.holds, "reviewer"), timeout=60,
               what="bd-e's loop at its review")  # fmt: skip
    kept = tree.beads.with_suffix(".kept")
    os.rename(tree.beads, kept)
    tree.beads.mkdir()  # the store cannot be read: beads answers store_error
    failures = len(tree.dispatcher_events("round_failed"))
    loop_holds.release(tree.holds, "reviewer")
    wait_until(lambda: len(tree.dispatcher_events("round_failed")) >= failures + 2,
               timeout=60, what="the dispatcher to fail rounds on the broken store")  # fmt: skip
    assert "store_error" in tree.dispatcher_events("round_failed")[-1]["reason"]
    assert not [e for e in tree.dispatcher_events("loop_settled") if e["bead_id"] == "bd-e"]
    tree.beads.rmdir()
    os.rename(kept, tree.beads)
    tree.wait_closed("bd-e", timeout=60)
    settled = [e for e in tree.dispatcher_events("loop_settled") if e["bead_id"] == "bd-e"]
    assert [(e["loop_id"], e["outcome"]) for e in settled] == [("bd-e.1", "closed")]


def test_a_claim_whose_loop_is_gone_is_resumed_after_a_dispatcher_sigkill(tree: Tree) -> None:
    tree.arm("auditor")
    tree.add("bd-f")
    wait_until(lambda: loop_holds.is_held(tree.holds, "auditor"), timeout=60,
               what="bd-f's loop at its first turn")  # fmt: skip
    child = next(e["child"] for e in tree.dispatcher_events("loop_started")
                 if e["bead_id"] == "bd-f")  # fmt: skip
    pid = tree.d.pid("dispatcher")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    tree.d.call("stop", id=child)  # the loop is gone while the dispatcher is down
    tree.wait_closed("bd-f", timeout=90)
    resumed = [e for e in tree.dispatcher_events("loop_resuming") if e["bead_id"] == "bd-f"]
    assert [e["loop_id"] for e in resumed] == ["bd-f.1"]
    started = [e for e in tree.dispatcher_events("loop_started") if e["bead_id"] == "bd-f"]
    assert [e["loop_id"] for e in started] == ["bd-f.1"]  # no second attempt
    assert tree.d.pid("dispatcher") not in (None, pid)


def test_a_claim_the_dispatcher_has_no_record_of_is_adopted_and_resumed(tree: Tree) -> None:
    tree.arm("auditor")
    tree.add("bd-g")
    wait_until(lambda: loop_holds.is_held(tree.holds, "auditor"), timeout=60,
               what="bd-g's loop at its first turn")  # fmt: skip
    child = next(e["child"] for e in tree.dispatcher_events("loop_started")
                 if e["bead_id"] == "bd-g")  # fmt: skip
    tree.d.call("stop", id="dispatcher")
    for path in (tree.d.tmp / "state").glob("dispatcher.sqlite3*"):
        path.unlink()  # its memory is lost: beads' claims are the record
    tree.d.call("stop", id=child)
    tree.d.call("start", id="dispatcher")
    tree.wait_closed("bd-g", timeout=90)
    adopted = [e for e in tree.dispatcher_events("claim_adopted") if e["bead_id"] == "bd-g"]
    assert [e["loop_id"] for e in adopted] == ["bd-g.1"]
    resumed = [e for e in tree.dispatcher_events("loop_resuming") if e["bead_id"] == "bd-g"]
    assert [e["loop_id"] for e in resumed] == ["bd-g.1"]


def factoryctl_dispatch(tree: Tree, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor.ctl.cli", "--runtime-dir", str(tree.d.runtime_dir),
         "dispatch", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_paused_it_starts_nothing_even_across_a_restart_until_resumed(tree: Tree) -> None:
    """An operator's drain: `factoryctl dispatch pause` holds a ready bead back (rounds
    run, see it ready, start nothing), the pause outlives a SIGKILL of the dispatcher,
    and `resume` starts it at once."""
    assert "PAUSED" in factoryctl_dispatch(tree, "pause", "--reason", "disk swap")
    try:
        tree.add("bd-p")
        rounds = tree.call("dispatcher", "status")["rounds"]
        tree.call("dispatcher", "round")

        def a_paused_round_saw_it() -> bool:
            status = tree.call("dispatcher", "status")
            last = status["last_round"] or {}
            return status["rounds"] > rounds and last.get("paused") and last.get("ready") == 1

        wait_until(a_paused_round_saw_it, timeout=60, what="a round that saw bd-p, paused")
        pid = tree.d.pid("dispatcher")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: tree.d.pid("dispatcher") not in (None, pid), timeout=60,
                   what="the dispatcher restarted")  # fmt: skip
        wait_until(lambda: (tree.call("dispatcher", "status")["last_round"] or {}).get("paused"),
                   timeout=60, what="the restarted dispatcher's round, paused")  # fmt: skip
        status = orjson.loads(factoryctl_dispatch(tree, "--json"))
        assert status["paused"]["reason"] == "disk swap"
        assert not [e for e in tree.dispatcher_events("loop_started") if e["bead_id"] == "bd-p"]
        assert tree.status_of("bd-p") == "open"
    finally:
        resumed = factoryctl_dispatch(tree, "resume")
    assert resumed == "dispatching resumed\n"
    tree.wait_closed("bd-p", timeout=90)
    assert factoryctl_dispatch(tree, "resume") == "it was not paused\n"
