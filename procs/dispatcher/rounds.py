"""One dispatch round: settle every live dispatch, then start loops for ready beads while
loop slots are free. Runs in the service's one worker thread (its calls block: `start`
returns once the loop said READY=1), one round at a time.

    round()
      1. beads `list`: the live claims. A claim of a `factory/LOOP` actor the records do
         not know (the dispatcher lost a write, or its database) is adopted: never forgotten.
      2. for each live dispatch, policy.settle over (claim, loops.sqlite3, factoryd's
         `loops` children), carried out: wait (watch its pid), land (close once the
         commit is an ancestor of golden HEAD), fail, resume (start the loop child again
         with the same loop id: it resumes from its store), release, or forget.
      3. unless an operator paused dispatching (records.paused) or golden is red (the
         golden master's status: a new loop's suite would fail on golden's own red test,
         tokens spent for nothing; TestPassing brings a round) — loops already running
         go on, and a dead one is resumed; beads only wait — with
         free loop slots (the ledger, no wait): for each bead of beads' `ready
         {unassigned}` in order, not busy, not in backoff: record `claiming`, claim
         (loop id BEAD.ATTEMPT, a fresh attempt), start the loop child.
Any PeerError aborts the round (the service retries with backoff): nothing is decided
on an answer that did not come. A start refused for want of a slot (exit 75) releases
the claim (no attempt counted) and holds the bead back; any other refused start (bad
input: exit 2) is a failed attempt, as is a failed loop, and the bead waits longer after
each (policy.retry_delay_s) until beads blocks it after its last attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from procs.dispatcher.landing import GoldenAncestry, LandingUnknown
from procs.dispatcher.leftovers import CleanupFailed, WorkspaceCleaner
from procs.dispatcher.peers import (
    BeadsPeer,
    Conflict,
    FactorydPeer,
    LoopRecords,
    PeerError,
    Stale,
    StartRefused,
    free_loop_slots,
)
from procs.dispatcher.policy import (
    Act,
    Action,
    Dispatch,
    LiveClaim,
    LoopView,
    Process,
    next_attempt,
    pick,
    resumes_counted,
    retry_delay_s,
    settle,
)
from procs.dispatcher.records import DispatchRecords

Report = Callable[..., None]
# beads' refusals about one bead (its store record no longer ours, a bad id): that
# dispatch ends, reported; the other beads' rounds go on
PER_BEAD = ("conflict", "bad_request", "not_found")
_NO_SLOT = "exit code 75"  # the loop's EX_TEMPFAIL: no loop slot free


@dataclass(frozen=True)
class RoundConfig:
    max_resumes: int = 2
    max_loops: int | None = None
    retry_base_s: float = 30.0
    retry_max_s: float = 900.0


@dataclass
class RoundResult:
    """What a round did; `watch` maps each running loop to its pid."""

    started: list[str] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    watch: dict[str, int] = field(default_factory=dict)
    live: int = 0
    free_slots: int = 0
    ready: int | None = None
    waiting_for_slot: int = 0
    paused: bool = False
    held: str | None = None  # why no new loop started although slots were free


class Dispatcher:
    def __init__(self, *, beads: BeadsPeer, factoryd: FactorydPeer, loops: LoopRecords,
                 records: DispatchRecords, golden: GoldenAncestry, runtime: Path,
                 config: RoundConfig, report: Report,
                 cleaner: WorkspaceCleaner | None = None) -> None:  # fmt: skip
        self.beads = beads
        self.factoryd = factoryd
        self.loops = loops
        self.records = records
        self.golden = golden
        self.runtime = runtime
        self.config = config
        self.report = report
        self.cleaner = cleaner

    def round(self) -> RoundResult:
        out = RoundResult()
        claims = self.beads.claims()
        self._adopt(claims)
        live = self.records.live()
        processes = self.factoryd.loops() if live else None
        free = self._free(len(live))
        for dispatch in live:
            assert processes is not None
            free -= self._settle(dispatch, claims.get(dispatch.bead_id), processes, free, out)
        live = self.records.live()
        out.live = len(live)
        free = min(free, self._free(len(live)))
        out.free_slots = max(0, free)
        out.paused = self.records.paused() is not None
        if free > 0 and not out.paused:
            out.held = self.golden.red()
        if out.paused or out.held:
            out.ready = len(self.beads.ready())  # what is held back, for status
        elif free > 0:
            ready = self.beads.ready()
            out.ready = len(ready)
            if ready and processes is None:
                processes = self.factoryd.loops()
            busy = {d.bead_id for d in live}  # and any bead a loop child still works on:
            busy |= {p.bead_id for p in (processes or {}).values() if p.running}
            for bead in pick(ready, busy, self.records.not_before(), time.time(), free):
                if not self._start_new(bead, out):
                    break  # a refused start: the slot count may be wrong; next round
            out.live = len(self.records.live())
        return out

    def _free(self, live: int) -> int:
        return free_loop_slots(self.runtime, live, self.config.max_loops)

    # -- claims the records do not know --------------------------------------------------

    def _adopt(self, claims: dict[str, LiveClaim]) -> None:
        for claim in claims.values():
            if self.records.get(claim.loop_id) is not None:
                continue
            view = self.loops.view(claim.loop_id)
            attempt = view.attempt if view else _attempt_of(claim.loop_id)
            self.records.begin(claim.loop_id, claim.bead_id, attempt, state="running",
                               generation=claim.generation)  # fmt: skip
            self.report("claim_adopted", bead_id=claim.bead_id, loop_id=claim.loop_id,
                        generation=claim.generation)  # fmt: skip

    # -- live dispatches ----------------------------------------------------------------

    def _settle(self, d: Dispatch, claim: LiveClaim | None, processes: dict[str, Process],
                free: int, out: RoundResult) -> int:  # fmt: skip
        """policy.settle for `d`, carried out; returns the loop slots it took (0 or 1)."""
        if claim is not None and claim.loop_id == d.loop_id and d.generation != claim.generation:
            self.records.update(d.loop_id, state="running", generation=claim.generation)
            d = replace(d, state="running", generation=claim.generation)
        loop = self.loops.view(d.loop_id)
        process = processes.get(d.loop_id)
        action = settle(d, claim, loop, process, max_resumes=self.config.max_resumes,
                        tree_started_at=self.factoryd.started_at)  # fmt: skip
        if process is not None and process.running and process.pid:
            out.watch[d.loop_id] = process.pid  # ended or not: its exit frees a slot
        try:
            return self._carry_out(d, action, loop=loop, process=process, free=free, out=out)
        except PeerError as exc:
            if exc.peer != "beads" or exc.kind not in PER_BEAD:
                raise  # the peer is unwell: the round stops, nothing decided on it
            self._end(d, exc.kind, str(exc), out)  # this bead's own trouble: reported
            return 0

    def _carry_out(self, d: Dispatch, action: Action, *, loop: LoopView | None,
                   process: Process | None, free: int, out: RoundResult) -> int:  # fmt: skip
        generation = d.generation or 0
        if action.act is Act.WAIT:
            if process is not None and process.child_id != d.child_id:
                self.records.update(d.loop_id, child_id=process.child_id)
        elif action.act is Act.FORGET:
            if process is not None and process.running:  # not ours: one loop per bead
                self.factoryd.stop(process.child_id)
            outcome = "aborted" if d.state == "claiming" else "forgotten"
            self._end(d, outcome, action.reason, out)
        elif action.act is Act.LAND:
            assert loop is not None
            self._land(d, loop, generation, out)
            if process is None or not process.running:  # killed before it cleaned up
                self._leftover(d, loop.workspace)  # (bench/chaos.py): its tmp, workspace
        elif action.act is Act.FAIL:
            if loop is not None and not loop.terminal and self._proposed(d, loop, out):
                return 0  # its patch landed (the bead is closed) or is still being decided
            self._fail(d, generation, action.reason, out)
            if loop is not None and not loop.terminal:  # it died: nobody freed its workspace
                self._leftover(d, loop.workspace)
        elif action.act is Act.RELEASE:
            self._release(d, generation, action.reason, out)
        elif action.act is Act.RESUME:
            if free <= 0:
                out.waiting_for_slot += 1
                return 0
            resume = resumes_counted(d, loop, self.factoryd.started_at) + 1
            self.report("loop_resuming", loop_id=d.loop_id, bead_id=d.bead_id,
                        reason=action.reason, resume=resume)  # fmt: skip
            try:  # a factoryd that does not answer aborts the round: no resume counted
                child, pid = self.factoryd.start(self._loop_args(d))
            except StartRefused as exc:
                self.records.update(d.loop_id, resumes=resume, resumed_at=time.time())
                self.report("resume_refused", loop_id=d.loop_id, reason=str(exc))
                return 0
            self.records.update(d.loop_id, resumes=resume, child_id=child, resumed_at=time.time())
            out.watch[d.loop_id] = pid
            return 1
        return 0

    def _land(self, d: Dispatch, loop: LoopView, generation: int, out: RoundResult) -> None:
        try:
            landed = self.golden.landed(d.loop_id, loop.landed_commit)
        except LandingUnknown as exc:  # never "not landed": asked again next round
            self.report("landing_unknown", loop_id=d.loop_id, reason=str(exc))
            return
        if not landed:
            reason = (f"the loop completed but its commit {loop.landed_commit[:12]} is not on "
                      f"golden {self.golden.branch or 'HEAD'}")  # fmt: skip
            self._fail(d, generation, reason, out)
            return
        stats = {
            "loop_id": d.loop_id, "attempt": d.attempt, "generation": generation,
            **loop.counters, "commit": loop.landed_commit,
            "duration_s": round(loop.updated_at - loop.created_at, 3),
        }  # fmt: skip
        try:
            self.beads.close(d.bead_id, d.loop_id, generation, stats)
        except Stale as exc:
            self._end(d, "forgotten", str(exc), out)
            return
        self._end(d, "closed", "landed", out)

    def _proposed(self, d: Dispatch, loop: LoopView, out: RoundResult) -> bool:
        """A loop that died past its resumes may have proposed its patch (it died in
        Pushing): while the merge queue still decides it, wait; once it landed, close the
        bead. Failing it then would open a bead whose commit is on golden (found by
        bench/chaos.py). True when that is so (the bead is not to be failed now)."""
        try:
            state = self.golden.proposal(d.loop_id)
        except LandingUnknown as exc:  # never "not proposed": asked again next round
            self.report("landing_unknown", loop_id=d.loop_id, reason=str(exc))
            return True
        if state in ("fetching", "queued"):
            self.report("landing_pending", loop_id=d.loop_id, bead_id=d.bead_id, state=state)
            return True
        if state != "accepted":
            return False
        self._land(d, loop, d.generation or 0, out)
        self._leftover(d, loop.workspace)
        return True

    def _fail(self, d: Dispatch, generation: int, reason: str, out: RoundResult) -> None:
        try:
            status = self.beads.fail(d.bead_id, d.loop_id, generation, reason)
        except Stale as exc:
            self._end(d, "forgotten", str(exc), out)
            return
        failures = self.records.failures(d.bead_id) + 1
        delay = retry_delay_s(failures, self.config.retry_base_s, self.config.retry_max_s)
        self.records.failed(d.bead_id, delay)
        self._end(d, "failed", reason, out, status=status, retry_in_s=delay)

    def _leftover(self, d: Dispatch, workspace: str) -> None:
        if self.cleaner is None:
            return
        if self.cleaner.remove_tmp(d.loop_id):
            self.report("loop_tmp_removed", loop_id=d.loop_id)
        if not workspace or not Path(workspace).is_dir():
            return  # freed by the loop itself (or never made): nothing to settle
        try:
            done = self.cleaner.settle(workspace)
        except CleanupFailed as exc:  # the bead is settled; the workspace waits for reaping
            self.report("workspace_not_freed", loop_id=d.loop_id, workspace=workspace,
                        reason=str(exc))  # fmt: skip
            return
        self.report("workspace_settled", loop_id=d.loop_id, workspace=workspace, action=done)

    def _release(self, d: Dispatch, generation: int, reason: str, out: RoundResult) -> None:
        try:
            self.beads.release(d.bead_id, d.loop_id, generation, reason)
        except Stale as exc:
            self._end(d, "forgotten", str(exc), out)
            return
        self.records.hold_back(d.bead_id, time.time() + self.config.retry_base_s)
        self._end(d, "released", reason, out)

    def _end(self, d: Dispatch, outcome: str, reason: str, out: RoundResult,
             **extra: Any) -> None:  # fmt: skip
        self.records.end(d.loop_id, outcome, reason)
        ended = {"loop_id": d.loop_id, "bead_id": d.bead_id, "outcome": outcome,
                 "reason": reason, **extra}  # fmt: skip
        out.ended.append(ended)
        self.report("loop_settled", **ended)

    # -- new loops -------------------------------------------------------------------------

    def _start_new(self, bead: str, out: RoundResult) -> bool:
        """Claim `bead` for a new loop and start it; False when a start was refused."""
        attempt = next_attempt(self.records.attempts(bead) + self.loops.attempts(bead))
        d = self.records.begin(f"{bead}.{attempt}", bead, attempt)
        try:
            generation = self.beads.claim(bead, d.loop_id)
        except Conflict as exc:  # another loop has it: not ours to start
            self._end(d, "conflict", str(exc), out)
            return True
        except PeerError as exc:
            if exc.kind != "bad_request":
                raise  # the claiming row stays: the next round settles it from beads' claims
            self.records.hold_back(bead, time.time() + self.config.retry_max_s)
            self._end(d, "refused", str(exc), out)
            return True
        self.records.update(d.loop_id, state="running", generation=generation)
        d = replace(d, state="running", generation=generation)
        try:
            child, pid = self.factoryd.start(self._loop_args(d))
        except StartRefused as exc:
            if _NO_SLOT in str(exc):  # not the bead's fault: give it back, try later
                self.beads.release(bead, d.loop_id, generation, f"no loop slot: {exc}")
                self.records.hold_back(bead, time.time() + self.config.retry_base_s)
                self._end(d, "start_failed", str(exc), out)
            else:  # bad input, a crash at start: an attempt, counted (then blocked)
                self._fail(d, generation, f"the loop did not start: {exc}", out)
            return False
        self.records.update(d.loop_id, child_id=child, resumed_at=time.time())
        out.watch[d.loop_id] = pid
        out.started.append(d.loop_id)
        self.report("loop_started", loop_id=d.loop_id, bead_id=bead, attempt=attempt,
                    generation=generation, child=child, pid=pid)  # fmt: skip
        return True

    @staticmethod
    def _loop_args(d: Dispatch) -> list[str]:
        return ["--bead", d.bead_id, "--attempt", str(d.attempt), "--loop-id", d.loop_id,
                "--slot-timeout-s", "0"]  # fmt: skip


def _attempt_of(loop_id: str) -> int:
    """BEAD.ATTEMPT's attempt, 1 for a loop id of another shape."""
    tail = loop_id.rpartition(".")[2]
    return int(tail) if tail.isdigit() and int(tail) > 0 else 1
