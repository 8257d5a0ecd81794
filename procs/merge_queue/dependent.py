"""Zuul's dependent pipeline, carried out: the merge queue's speculative builds and runs.

    pipeline = DependentPipeline(config, loop, store, repo, slots, golden_socket, ...)
    pipeline.pump()              # after every event: ask `pipeline.plan`, carry it out
    pipeline.decide(entry, ...)  # accepted | rejected, once; waiters told, signal sent
    pipeline.reconcile()         # read golden HEAD (a worker); a move rebuilds

It lives on the service loop's thread and owns the speculative state of each waiting
patch (`Live`). Builds are a few git calls on that thread; test runs and advances run
in workers and come back to it, where a result for a build discarded meanwhile (its
generation moved on) is dropped.
"""

from __future__ import annotations

import itertools
import math
import shlex
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ipc import control, service_report
from ipc.queue_words import GOLDEN_RED_NOTE
from ipc.service import Deferred, ServiceLoop
from ipc.signals import GitHash, PatchAccepted, PatchRejected, Signal
from procs import gauntlet, sandbox
from procs.merge_queue import pipeline
from procs.merge_queue.pipeline import Item, Spec
from procs.merge_queue.queue_repo import GitError, QueueRepo
from procs.merge_queue.store import Entry, PatchStore
from procs.merge_queue.suite_run import SuiteRun, Verdict, cheat_findings

DEFAULT_TEST_COMMAND = "python3 -m pytest -q -p no:cacheprovider"
GOLDEN_TIMEOUT_S = 60.0
RETRY_S = 2.0
WITHDRAWN = "withdrawn by its proposer"


def report(event: str, **fields: Any) -> None:
    service_report.report("merge_queue", event, **fields)


@dataclass(frozen=True)
class QueueConfig:
    k: int = 4
    test_command: tuple[str, ...] = tuple(shlex.split(DEFAULT_TEST_COMMAND))
    suite_timeout_s: float = 600.0
    golden: str = "golden"  # the golden master's control socket name
    reconcile_s: float = 5.0
    publish: bool = True
    cheat_detection: bool = False  # the gauntlet's static checks after a green suite


@dataclass
class Live:
    """What is known of one waiting patch beyond the store: its build and its test."""

    spec: Spec | None = None
    green: bool | None = None
    output: str = ""
    failure: str = "tests"  # what a red verdict failed: tests | gauntlet
    run: SuiteRun | None = None
    held_until: float = 0.0  # a run that could not start: not retried before this
    result_at: float = 0.0  # when its verdict came (monotonic): landing overhead from here
    generation: int = 0
    entered: int | None = None  # when it first got a build: the window keeps its order

    def reset(self) -> None:
        if self.run is not None:
            self.run.cancel()
        self.spec, self.green, self.output, self.run = None, None, "", None
        self.failure = "tests"
        self.generation += 1


class DependentPipeline:
    def __init__(
        self,
        config: QueueConfig,
        loop: ServiceLoop,
        store: PatchStore,
        repo: QueueRepo,
        slots: list[Path],
        *,
        golden_socket: Path,
        head: str,
        golden_state: str,
        publish: Callable[[Signal], None],
    ) -> None:
        self.config, self.loop, self.store, self.repo = config, loop, store, repo
        self.golden_socket, self.publish = golden_socket, publish
        self.free_slots = list(slots)
        self.head, self.golden_state = head, golden_state
        self.live: dict[str, Live] = {}
        self.landing: str | None = None
        self.waiters: dict[str, list[Deferred]] = {}
        self._entered = itertools.count()
        self._pumping = self._pump_again = self._reconciling = False
        self._advances = 0  # advances answered: a HEAD read from before one is stale
        self.withdraw_after_landing: set[str] = set()
        self._head_doubt = False  # an advance was refused: no landing until HEAD is read
        self.counts = {"proposed": 0, "accepted": 0, "rejected": 0, "builds": 0, "runs": 0,
                       "discarded": 0, "cas_refused": 0, "run_errors": 0}  # fmt: skip
        # for bench/merge_queue.py: verdict -> accepted per landing; each finished run
        self.landing_ms: deque[float] = deque(maxlen=1000)
        self.run_log: deque[dict[str, Any]] = deque(maxlen=1000)

    def close(self) -> None:
        for live in self.live.values():
            if live.run is not None:
                live.run.cancel()

    def ordered(self) -> list[Entry]:
        waiting = self.store.waiting()  # priority, then age
        for entry in waiting:
            self.live.setdefault(entry.patch_id, Live())
        return sorted(waiting, key=lambda e: _entered_key(self.live[e.patch_id]))

    def pump(self) -> None:
        """Ask the plan and carry it out until it only starts work that comes back later."""
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        try:
            for _ in range(10_000):
                self._pump_again = False
                if not self._step() and not self._pump_again:
                    return
        finally:
            self._pumping = False

    def _step(self) -> bool:
        """One plan, carried out; True when the queue changed (plan again at once)."""
        entries = self.ordered()
        by_id = {e.patch_id: e for e in entries}
        if self._adopt_landed(entries):
            return True
        now = time.monotonic()
        items = [Item(e.patch_id, self.live[e.patch_id].spec, self.live[e.patch_id].green,
                      self.live[e.patch_id].run is not None
                      or self.live[e.patch_id].held_until > now) for e in entries]  # fmt: skip
        landing = self.landing or ("?" if self._head_doubt else None)
        actions = pipeline.plan(items, self.head, k=self.config.k,
                                free_slots=len(self.free_slots), landing=landing)  # fmt: skip
        changed = False
        for action in actions:
            match action:
                case pipeline.Discard(patch_id=pid):
                    self.live[pid].reset()
                    self.counts["discarded"] += 1
                    changed = True
                case pipeline.Build(patch_id=pid, base=base):
                    self._build(by_id[pid], base)
                    changed = True
                case pipeline.RunSuite(patch_id=pid):
                    self._start_test(by_id[pid])
                case pipeline.Land(patch_id=pid):
                    self._land(by_id[pid])
                case pipeline.Accept(patch_id=pid):
                    self.decide(by_id[pid], "accepted", landed_hash=by_id[pid].tip)
                    changed = True
                case pipeline.Reject(patch_id=pid, reason=reason, detail=detail):
                    if reason == "tests" and self.live[pid].failure == "gauntlet":
                        reason, detail = "gauntlet", "the gauntlet's cheat detection refused it"
                    elif reason == "tests" and self.golden_state == "red":
                        detail += f" ({GOLDEN_RED_NOTE})"
                    self.decide(by_id[pid], "rejected", reason=reason, detail=detail,
                                 output=self.live[pid].output)  # fmt: skip
                    changed = True
        return changed

    def _adopt_landed(self, entries: list[Entry]) -> bool:
        """Golden HEAD is the build of the patch at the head (an advance whose answer was
        lost): that patch landed."""
        if not entries or self.landing is not None:
            return False
        spec = self.live[entries[0].patch_id].spec
        if spec is None or spec.tip != self.head or spec.base == self.head or spec.contained:
            return False
        self.decide(entries[0], "accepted", landed_hash=self.head)
        return True

    def _build(self, entry: Entry, base: str) -> None:
        live = self.live[entry.patch_id]
        if live.entered is None:
            live.entered = next(self._entered)
        try:
            live.spec = self.repo.build(base, entry.tip, entry.patch_id, entry.title)
        except GitError as exc:
            live.spec = Spec(base, None, detail=f"cannot build on {base}: {exc}")
        live.green, live.output = None, ""
        self.counts["builds"] += 1

    def _start_test(self, entry: Entry) -> None:
        live, repo = self.live[entry.patch_id], self.repo
        assert live.spec is not None and live.spec.tip is not None
        slot, tip, generation = self.free_slots.pop(), live.spec.tip, live.generation
        base, cheats = live.spec.base, self.config.cheat_detection
        run = SuiteRun(slot, self.config.test_command, timeout_s=self.config.suite_timeout_s)
        live.run = run

        def test() -> Verdict:
            repo.checkout(slot, tip)
            verdict = run.run()
            if not (verdict.green and cheats):
                return verdict
            try:
                findings = cheat_findings(slot, base)
            except gauntlet.ChangeError as exc:
                findings = [f"the change could not be read: {exc}"]
            if not findings:
                return verdict
            text = "cheat detection:\n" + "\n".join(findings[:50])
            return replace(verdict, green=False, reason="gauntlet", output=text)

        deferred = self.loop.run_in_thread(test)
        self.counts["runs"] += 1
        deferred.add_done_callback(lambda d: self._tested(entry.patch_id, generation, slot, d))

    def _tested(self, patch_id: str, generation: int, slot: Path, deferred: Deferred) -> None:
        self.free_slots.append(slot)
        live = self.live.get(patch_id)
        if live is None or live.generation != generation:
            self.run_log.append({"patch_id": patch_id, "ms": None, "cancelled": True})
            self.pump()  # a slot came free
            return
        live.run = None
        try:
            verdict: Verdict = deferred.result()
        except (sandbox.SandboxUnavailable, OSError, GitError, ValueError) as exc:
            self.counts["run_errors"] += 1
            report("run_failed_to_start", patch_id=patch_id, reason=str(exc))
            live.held_until = time.monotonic() + RETRY_S
            self.loop.after(RETRY_S, self.pump)
        else:
            self.run_log.append({"patch_id": patch_id, "ms": round(verdict.duration_ms, 1),
                                 "cancelled": verdict.cancelled})  # fmt: skip
            if not verdict.cancelled:
                live.green, live.output = verdict.green, verdict.output
                live.failure = verdict.reason
                live.result_at = time.monotonic()
        self.pump()

    def _land(self, entry: Entry) -> None:
        live = self.live[entry.patch_id]
        assert live.spec is not None and live.spec.tip is not None
        spec, generation = live.spec, live.generation
        self.landing = entry.patch_id
        args = {"to": spec.tip, "expected_head": spec.base, "source": str(self.repo.path),
                "green": True, "patch_id": entry.patch_id,
                "output": live.output[-4000:]}  # fmt: skip
        socket = self.golden_socket

        def advance() -> Any:
            return control.call(socket, "advance", args, timeout=GOLDEN_TIMEOUT_S)

        deferred = self.loop.run_in_thread(advance)
        deferred.add_done_callback(lambda d: self._advanced(entry, spec, generation, d))

    def _advanced(self, entry: Entry, spec: Spec, generation: int, deferred: Deferred) -> None:
        self.landing = None
        self._advances += 1
        withdrawn = entry.patch_id in self.withdraw_after_landing
        self.withdraw_after_landing.discard(entry.patch_id)
        try:
            deferred.result()
        except control.ControlError as exc:
            if isinstance(exc, control.RemoteError):
                self.counts["cas_refused"] += exc.type == "stale_head"
            report("advance_refused", patch_id=entry.patch_id, reason=str(exc),
                   type=getattr(exc, "type", "unreachable"))  # fmt: skip
            if withdrawn:
                self.decide(entry, "rejected", reason="stale", detail=WITHDRAWN)
            self._head_doubt = True  # golden moved under us, or did not answer: read
            delay = 0.0 if isinstance(exc, control.RemoteError) else RETRY_S  # HEAD, rebuild
            self.loop.after(delay, self.reconcile)
            return
        assert spec.tip is not None
        self.head = spec.tip
        self.golden_state = "green"
        live = self.live.get(entry.patch_id)
        if live is not None and live.generation == generation and live.result_at:
            self.landing_ms.append((time.monotonic() - live.result_at) * 1000.0)
        self.decide(entry, "accepted", landed_hash=spec.tip)
        self.pump()

    def decide(self, entry: Entry, state: str, *, reason: str = "", detail: str = "",
                output: str = "", landed_hash: str = "") -> None:  # fmt: skip
        done = self.store.decide(entry.patch_id, state, now=time.time(), reason=reason,
                                 detail=detail, output=output, landed_hash=landed_hash)  # fmt: skip
        live = self.live.pop(entry.patch_id, None)
        if live is not None and live.run is not None:
            live.run.cancel()
        if not done:
            return
        self.counts[state] += 1
        report(state, patch_id=entry.patch_id, reason=reason, detail=detail[:500],
               landed_hash=landed_hash or None)  # fmt: skip
        if state == "accepted":
            self.publish(PatchAccepted(GitHash(landed_hash), entry.patch_id))
            for loser in self.store.waiting() if entry.group else []:
                if loser.group == entry.group:
                    self.decide(loser, "rejected", reason="stale",
                                 detail=f"{entry.patch_id} of group {entry.group!r} landed "
                                        "first")  # fmt: skip
        else:
            self.publish(PatchRejected(reason, entry.patch_id))
        decided = self.store.get(entry.patch_id)
        for waiter in self.waiters.pop(entry.patch_id, []):
            if decided is not None:
                waiter.resolve(decided.to_dict())

    def reconcile(self) -> None:
        """Read golden HEAD (in a worker); a move nobody told us of rebuilds the queue."""
        if self._reconciling:
            return
        socket = self.golden_socket
        try:
            deferred = self.loop.run_in_thread(
                lambda: control.call(socket, "get_hash", {}, timeout=GOLDEN_TIMEOUT_S)
            )
        except control.RequestRefused:
            return
        self._reconciling = True
        advances = self._advances
        deferred.add_done_callback(lambda d: self._reconciled(d, advances))

    def _reconciled(self, deferred: Deferred, advances: int) -> None:
        self._reconciling = False
        try:
            golden = deferred.result()
        except control.ControlError as exc:
            report("golden_unreachable", reason=str(exc))
            return
        self.golden_state = str(golden.get("state", "unknown"))
        fresh = advances == self._advances and self.landing is None
        self._head_doubt = self._head_doubt and not fresh
        if golden["hash"] != self.head and fresh:
            report("golden_moved", hash=golden["hash"], previous=self.head)
            self.head = golden["hash"]
        if self._head_doubt:  # this read began before the refusal: read again
            self.reconcile()
        self.pump()


def _entered_key(live: Live) -> float:
    return math.inf if live.entered is None else float(live.entered)
