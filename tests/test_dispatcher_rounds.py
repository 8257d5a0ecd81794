"""One dispatch round against stand-ins for its peers (beads, factoryd, loops.sqlite3,
golden) and its real SQLite records: a bead is closed only when its commit is on golden;
a peer error stops the round with nothing claimed, started, closed or failed; no slot,
no claim; a refused start gives the claim back and holds the bead back; a factoryd that
does not answer a resume costs the loop no resume."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ipc import paths
from procs.dispatcher.landing import LandingUnknown
from procs.dispatcher.leftovers import WorkspaceCleaner
from procs.dispatcher.peers import PeerError, StartRefused
from procs.dispatcher.policy import LiveClaim, LoopView, Process
from procs.dispatcher.records import DispatchRecords
from procs.dispatcher.rounds import Dispatcher, RoundConfig


class Beads:
    """TEST DOUBLE of BeadsPeer: claims in a dict, every call written down."""

    def __init__(self, ready: list[str]) -> None:
        self.ready_ids = ready
        self.live: dict[str, LiveClaim] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.broken: str | None = None

    def _check(self) -> None:
        if self.broken:
            raise PeerError("beads", "store_error", self.broken)

    def claims(self) -> dict[str, LiveClaim]:
        self._check()
        return dict(self.live)

    def ready(self) -> list[str]:
        self._check()
        return [b for b in self.ready_ids if b not in self.live]

    def claim(self, bead: str, loop_id: str) -> int:
        self._check()
        self.calls.append(("claim", bead, loop_id))
        self.live[bead] = LiveClaim(bead, loop_id, len(self.calls))
        return self.live[bead].generation

    def close(self, bead: str, loop_id: str, generation: int, stats: Any) -> None:
        self._check()
        self.calls.append(("close", bead, loop_id, stats["commit"]))
        del self.live[bead]
        self.ready_ids.remove(bead)  # closed: never ready again

    def fail(self, bead: str, loop_id: str, generation: int, reason: str) -> str:
        self._check()
        self.calls.append(("fail", bead, loop_id, reason))
        del self.live[bead]
        return "open"

    def release(self, bead: str, loop_id: str, generation: int, reason: str) -> None:
        self._check()
        self.calls.append(("release", bead, loop_id))
        del self.live[bead]


class Factoryd:
    """TEST DOUBLE of FactorydPeer: loop children by loop id."""

    def __init__(self) -> None:
        self.children: dict[str, Process] = {}
        self.refuse: str | None = None
        self.down = False
        self.start_times_out = False
        self.starts: list[list[str]] = []
        self.stopped: list[str] = []
        self.started_at: float | None = 1.0  # factoryd's start, long ago

    def loops(self) -> dict[str, Process]:
        if self.down:
            raise PeerError("factoryd", "unreachable", "no factoryd")
        return dict(self.children)

    def start(self, args: list[str]) -> tuple[str, int]:
        if self.down or self.start_times_out:
            raise PeerError("factoryd", "timeout", "no answer")
        self.starts.append(args)
        if self.refuse:
            raise StartRefused("factoryd", "start_failed", self.refuse)
        loop_id, bead = args[args.index("--loop-id") + 1], args[args.index("--bead") + 1]
        self.children[loop_id] = Process(f"loops.{len(self.starts)}", 1000 + len(self.starts),
                                         True, bead)  # fmt: skip
        return self.children[loop_id].child_id, 1000 + len(self.starts)

    def stop(self, child_id: str) -> None:
        self.stopped.append(child_id)
        self.children = {k: p for k, p in self.children.items() if p.child_id != child_id}


class Loops:
    """TEST DOUBLE of LoopRecords."""

    def __init__(self) -> None:
        self.views: dict[str, LoopView] = {}

    def view(self, loop_id: str) -> LoopView | None:
        return self.views.get(loop_id)

    def attempts(self, bead: str) -> list[int]:
        return [v.attempt for v in self.views.values() if v.bead_id == bead]

    def end(self, loop_id: str, phase: str, pushed: str = "", workspace: str = "") -> None:
        bead, _, attempt = loop_id.rpartition(".")
        self.views[loop_id] = LoopView(loop_id, bead, int(attempt), phase, "c" * 40, "g" * 40,
                                       "", {"commits": 1}, 0.0, 2.0, pushed,
                                       workspace)  # fmt: skip


class Golden:
    branch = "main"

    def __init__(self) -> None:
        self.on_golden: set[str] = set()
        self.unknown = False
        self.red_reason: str | None = None
        self.proposals: dict[str, str] = {}  # loop id -> its patch's state in the queue

    def red(self) -> str | None:
        return self.red_reason

    def landed(self, loop_id: str, commit: str) -> bool:
        if self.unknown:
            raise LandingUnknown("git hangs")
        return commit in self.on_golden

    def proposal(self, loop_id: str) -> str | None:
        if self.unknown:
            raise LandingUnknown("the merge queue does not answer")
        return self.proposals.get(loop_id)


class Round:
    def __init__(self, tmp: Path, ready: list[str], max_loops: int = 2,
                 keep_failed: bool = False) -> None:  # fmt: skip
        self.beads, self.factoryd, self.loops, self.golden = (Beads(ready), Factoryd(), Loops(),
                                                              Golden())  # fmt: skip
        self.records = DispatchRecords(tmp / "dispatcher.sqlite3")
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.dispatcher = Dispatcher(
            beads=self.beads, factoryd=self.factoryd, loops=self.loops,  # type: ignore[arg-type]
            records=self.records, golden=self.golden, runtime=tmp / "no-ledger",  # type: ignore[arg-type]
            config=RoundConfig(max_resumes=2, max_loops=max_loops, retry_base_s=30.0),
            report=lambda event, **fields: self.reports.append((event, fields)),
            cleaner=WorkspaceCleaner(tmp / "no-manager", tmp / "loop-workspaces",
                                     keep_failed=keep_failed, state=tmp),
        )  # fmt: skip

    def run(self) -> Any:
        return self.dispatcher.round()

    def exit(self, loop_id: str) -> None:
        del self.factoryd.children[loop_id]


def test_no_more_loops_than_slots_and_one_per_bead(tmp_path: Path) -> None:
    r = Round(tmp_path, ["a", "b", "c", "d"], max_loops=2)
    first = r.run()
    assert first.started == ["a.1", "b.1"] and first.free_slots == 2
    assert r.run().started == []  # both slots taken: nothing claimed
    assert [c[0] for c in r.beads.calls] == ["claim", "claim"]


def test_a_bead_is_closed_only_when_its_landed_commit_is_on_golden(tmp_path: Path) -> None:
    r = Round(tmp_path, ["a", "b"])
    r.run()
    r.loops.end("a.1", "complete", pushed="p" * 40)  # the queue's squashed commit
    r.loops.end("b.1", "complete")
    r.golden.on_golden = {"p" * 40}  # b's commit never reached golden
    r.run()
    assert ("close", "a", "a.1", "p" * 40) in r.beads.calls
    fails = [c for c in r.beads.calls if c[0] == "fail"]
    assert [(c[1], "is not on golden main" in c[3]) for c in fails] == [("b", True)]


def test_a_golden_that_cannot_say_closes_nothing_and_asks_again(tmp_path: Path) -> None:
    r = Round(tmp_path, ["a"])
    r.run()
    r.loops.end("a.1", "complete")
    r.golden.unknown = True
    r.run()
    assert [c[0] for c in r.beads.calls] == ["claim"]
    r.golden.unknown, r.golden.on_golden = False, {"c" * 40}
    r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "close"]


def test_a_beads_error_stops_the_round_with_nothing_done(tmp_path: Path) -> None:
    r = Round(tmp_path, ["a", "b"])
    r.run()
    r.loops.end("a.1", "complete")
    r.golden.on_golden = {"c" * 40}
    r.beads.broken = "database is locked"
    with pytest.raises(PeerError, match="store_error"):
        r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "claim"]  # nothing closed, failed
    r.beads.broken = None
    r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "claim", "close"]


def test_a_start_without_a_slot_gives_the_claim_back_and_holds_the_bead_back(
    tmp_path: Path,
) -> None:
    r = Round(tmp_path, ["a", "b"])
    r.factoryd.refuse = "loops.1: exited before ready: exit code 75"
    out = r.run()
    assert out.started == [] and [c[0] for c in r.beads.calls] == ["claim", "release"]
    r.factoryd.refuse = None
    assert r.run().started == ["b.1"]  # a waits its backoff; b was never tried
    assert r.records.not_before().keys() == {"a"}


def test_a_loop_that_cannot_start_is_a_failed_attempt(tmp_path: Path) -> None:
    r = Round(tmp_path, ["a"])
    r.factoryd.refuse = "loops.1: exited before ready: exit code 2"
    r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "fail"]  # counted: beads blocks it
    assert "exit code 2" in r.beads.calls[-1][3] and r.records.failures("a") == 1


def test_a_loop_gone_mid_way_is_resumed_but_an_unanswering_factoryd_costs_no_resume(
    tmp_path: Path,
) -> None:
    r = Round(tmp_path, ["a"])
    r.run()
    r.loops.end("a.1", "implementing")
    r.exit("a.1")
    r.factoryd.start_times_out = True
    for _ in range(5):
        with pytest.raises(PeerError, match="timeout"):
            r.run()
    r.factoryd.start_times_out = False
    r.run()
    assert r.factoryd.starts[-1][4:6] == ["--loop-id", "a.1"]  # same loop id, resumed
    dispatch = r.records.get("a.1")
    assert dispatch is not None and dispatch.resumes == 1


def test_a_loop_whose_claim_is_gone_is_stopped_and_its_bead_not_started_twice(
    tmp_path: Path,
) -> None:
    r = Round(tmp_path, ["a", "b"], max_loops=3)
    r.run()
    del r.beads.live["a"]  # an operator released a's claim: a.1 is no longer its loop
    r.factoryd.children["x.1"] = Process("loops.9", 99, True, "b")  # started by hand
    del r.beads.live["b"]
    r.records.end("b.1", "forgotten")
    r.factoryd.children.pop("b.1")
    assert r.run().started == []  # a's loop was live when the round looked
    assert r.factoryd.stopped == ["loops.1"]  # one loop per bead: a.1 had to go
    assert r.run().started == ["a.2"]  # b has a live loop child (x.1): not started again


@pytest.mark.parametrize("keep", [False, True])
def test_a_loop_that_died_past_its_resumes_fails_and_its_workspace_is_settled(
    tmp_path: Path, keep: bool
) -> None:
    r = Round(tmp_path, ["a"], keep_failed=keep)
    r.run()
    workspace = tmp_path / "loop-workspaces" / "a.1"
    workspace.mkdir(parents=True)
    scratch = paths.loop_tmp(tmp_path, "a.1") / "gauntlet-rev-tests-x"  # a SIGKILL left it
    scratch.mkdir(parents=True)
    r.loops.end("a.1", "implementing", workspace=str(workspace))
    for _ in range(3):  # it dies at once after each start: two resumes, then given up
        r.exit("a.1")
        r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "fail"]
    assert "resumed 2 times" in r.beads.calls[-1][3]
    assert workspace.is_dir() is keep
    assert scratch.is_dir() is keep  # its temp dir goes with it (kept for a post-mortem)
    settled = [f for e, f in r.reports if e == "workspace_settled"]
    assert [f["action"] for f in settled] == ["kept" if keep else "destroyed"]


def test_a_complete_loop_killed_before_it_freed_its_workspace_has_it_destroyed(
    tmp_path: Path,
) -> None:
    """Found by bench/chaos.py: a loop stored Complete and was killed before it freed its
    workspace; nobody resumes a complete loop, so the workspace stayed. Once the bead is
    closed the dispatcher destroys it; one still running frees its own."""
    r = Round(tmp_path, ["a", "b"])
    r.run()
    r.golden.on_golden.add("c" * 40)
    for loop_id in ("a.1", "b.1"):
        (tmp_path / "loop-workspaces" / loop_id).mkdir(parents=True)
        r.loops.end(loop_id, "complete",
                    workspace=str(tmp_path / "loop-workspaces" / loop_id))  # fmt: skip
    scratch = paths.loop_tmp(tmp_path, "a.1")  # a's temp dir, left by the kill too
    scratch.mkdir(parents=True)
    r.exit("a.1")  # a was killed after Complete; b is still freeing its own
    r.run()
    assert not scratch.exists()
    assert [c[:2] for c in r.beads.calls if c[0] == "close"] == [("close", "a"), ("close", "b")]
    assert not (tmp_path / "loop-workspaces" / "a.1").exists()
    assert (tmp_path / "loop-workspaces" / "b.1").is_dir()
    settled = [f for e, f in r.reports if e == "workspace_settled"]
    assert [(f["loop_id"], f["action"]) for f in settled] == [("a.1", "destroyed")]


def test_loops_killed_by_a_whole_tree_restart_are_resumed_past_max_resumes(
    tmp_path: Path,
) -> None:
    """A zygote or factoryd death takes every loop down: factoryd started after the
    loop's last start, so that death is not counted (a chaos soak with 6 tree restarts
    in 50 s gave up loops waiting in Pushing, which store nothing meanwhile)."""
    r = Round(tmp_path, ["a"])
    r.run()
    r.loops.end("a.1", "pushing")  # stored long ago: no progress since
    for n in range(4):  # four tree restarts in a row: each time resumed
        r.exit("a.1")
        r.factoryd.started_at = time.time()  # a new factoryd, started after the loop
        r.run()
        assert len(r.factoryd.starts) == n + 2, n
    assert [c[0] for c in r.beads.calls] == ["claim"]  # never failed
    r.exit("a.1")  # now it dies on its own: resumed (its 2nd resume since one counted) ...
    r.run()
    assert len(r.factoryd.starts) == 6
    r.exit("a.1")  # ... and again: given up
    r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "fail"]
    assert len(r.factoryd.starts) == 6


def test_a_loop_that_died_in_pushing_lands_if_its_patch_does(tmp_path: Path) -> None:
    """Found by bench/chaos.py: a loop killed (past its resumes) after its proposal was
    failed, its bead opened again, and then its patch landed: a bead open with its commit
    on golden. Its patch decides: queued, the bead waits; accepted, it is closed."""
    r = Round(tmp_path, ["a"])
    r.run()
    workspace = tmp_path / "loop-workspaces" / "a.1"
    workspace.mkdir(parents=True)
    r.loops.end("a.1", "pushing", workspace=str(workspace))
    r.golden.proposals["a.1"] = "queued"
    for _ in range(3):  # two resumes, then given up while its patch waits in the queue
        r.exit("a.1")
        r.run()
    r.run()  # and the next round still waits
    assert [c[0] for c in r.beads.calls] == ["claim"]  # not failed: its patch may land
    assert [e for e, _ in r.reports].count("landing_pending") == 2
    r.golden.proposals["a.1"] = "accepted"
    r.golden.on_golden.add("c" * 40)
    r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "close"]
    assert not workspace.is_dir()  # nobody else frees a dead loop's workspace
    r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "close"]  # settled once


def test_a_loop_that_died_in_pushing_with_its_patch_rejected_fails(tmp_path: Path) -> None:
    r = Round(tmp_path, ["a"])
    r.run()
    r.loops.end("a.1", "pushing")
    r.golden.proposals["a.1"] = "rejected"
    for _ in range(3):
        r.exit("a.1")
        r.run()
    assert [c[0] for c in r.beads.calls] == ["claim", "fail"]


def test_paused_no_new_loop_starts_but_live_ones_are_settled(tmp_path: Path) -> None:
    r = Round(tmp_path, ["a", "b"], max_loops=3)
    assert r.run().started == ["a.1", "b.1"]
    r.beads.ready_ids.append("c")
    r.records.pause("maintenance")
    r.loops.end("a.1", "complete", pushed="p" * 40)
    r.golden.on_golden.add("p" * 40)  # a landed: closed even while paused
    r.loops.end("b.1", "implementing")
    r.exit("b.1")  # b died mid-way: resumed even while paused (not new work)
    out = r.run()
    assert out.paused and out.started == [] and out.ready == 1  # c, held back
    assert ("close", "a", "a.1", "p" * 40) in r.beads.calls
    assert r.factoryd.starts[-1][4:6] == ["--loop-id", "b.1"]
    assert "c" not in {c[1] for c in r.beads.calls if c[0] == "claim"}
    restarted = DispatchRecords(tmp_path / "dispatcher.sqlite3")  # kept across restarts
    assert (restarted.paused() or {}).get("reason") == "maintenance"
    assert restarted.resume() and not restarted.resume()
    assert r.run().started == ["c.1"]


def test_while_golden_is_red_no_new_loop_starts(tmp_path: Path) -> None:
    """A new loop's suite would fail on golden's own red test: ready beads wait (and are
    counted), a loop already running is settled as usual; green again, they start."""
    r = Round(tmp_path, ["a"], max_loops=3)
    assert r.run().started == ["a.1"]
    r.beads.ready_ids.append("b")
    r.golden.red_reason = "golden is red at abc"
    out = r.run()
    assert out.started == [] and out.held == "golden is red at abc" and out.ready == 1
    assert [c[:2] for c in r.beads.calls] == [("claim", "a")]
    r.golden.red_reason = None
    assert r.run().started == ["b.1"]
