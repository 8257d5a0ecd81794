"""The merge queue service (its contract is in procs/merge_queue/__init__.py).

The loop's thread owns the queue: the store, the speculative state of each waiting patch
(`Live`) and the pipeline, whose pure `plan` it asks after every event (a proposal, a
test result, an advance answered, golden moved) and carries out. Builds are a few git
calls and run on the loop's thread; fetches, test runs and advances run in workers, and
their results come back to the loop's thread, where a result for a build that was
discarded meanwhile (its generation moved on) is dropped.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shlex
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ipc import control, paths, service_report
from ipc.bus import BusError, Publisher
from ipc.service import BadRequest, Call, Deferred, Ready, Service, ServiceLoop, serve
from ipc.service import StartFailed as ServiceStartFailed
from ipc.signals import GitHash, InvalidValue, PatchAccepted, PatchProposed, PatchRejected, Signal
from procs import gauntlet, sandbox
from procs.merge_queue import pipeline
from procs.merge_queue.pipeline import Item, Spec
from procs.merge_queue.queue_repo import GitError, QueueRepo
from procs.merge_queue.store import Entry, PatchStore
from procs.merge_queue.suite_run import SuiteRun, Verdict, cheat_findings

SERVICE = "merge_queue"
DB_NAME = "merge_queue.sqlite3"
DEFAULT_TEST_COMMAND = "python3 -m pytest -q -p no:cacheprovider"
GOLDEN_TIMEOUT_S = 60.0
PUBLISH_TIMEOUT_S = 1.0
BUS_CONNECT_S = 5.0
RETRY_S = 2.0
MAX_WAIT_S = 3600.0
WITHDRAWN = "withdrawn by its proposer"


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


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


class MergeQueue(Service):
    name = SERVICE
    max_queued = 256
    drain_s = 2.0

    def __init__(self, config: QueueConfig, db_path: Path, work_dir: Path, runtime: Path) -> None:
        self.config = config
        self.workers = config.k + 2  # K test runs, a fetch and an advance
        self.db_path, self.work_dir, self.runtime = db_path, work_dir, runtime
        self.golden_socket = paths.control_socket(runtime, config.golden)
        self.loop: ServiceLoop | None = None
        self.store: PatchStore | None = None
        self.repo: QueueRepo | None = None
        self.publisher: Publisher | None = None
        self.head = ""
        self.golden_state = "unknown"
        self.live: dict[str, Live] = {}
        self.free_slots: list[Path] = []
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

    # -- lifecycle ------------------------------------------------------------------------

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        try:
            golden = control.call(self.golden_socket, "get_hash", {}, timeout=GOLDEN_TIMEOUT_S)
            sandbox.command_prefix(sandbox.SandboxPolicy(workspace=self.work_dir.parent))
        except control.ControlError as exc:
            raise ServiceStartFailed(f"the golden master does not answer: {exc}") from None
        except sandbox.SandboxUnavailable as exc:
            raise ServiceStartFailed(str(exc)) from None
        self.head, self.golden_state = golden["hash"], golden.get("state", "unknown")
        try:
            self.repo = QueueRepo.open(self.work_dir / "repo.git", Path(golden["repo"]))
            for i in range(self.config.k):
                slot = self.work_dir / "slots" / str(i)
                self.repo.add_slot(slot, self.head)
                self.free_slots.append(slot)
        except GitError as exc:
            raise ServiceStartFailed(f"the queue's repository: {exc}") from None
        self.store = PatchStore(self.db_path)
        if self.config.publish:
            try:
                self.publisher = Publisher(self.runtime, source=SERVICE)
            except BusError as exc:
                raise ServiceStartFailed(str(exc)) from None
            try:  # a slow joiner's first signals would be lost: wait for the broker
                self.publisher.wait_connected(timeout=BUS_CONNECT_S)
            except BusError as exc:  # signals only say "look": serve without them for now
                report("bus_not_connected", reason=str(exc))
        loop.every(self.config.reconcile_s, self._reconcile)
        loop.after(0.0, self.pump)
        waiting = len(self.store.waiting())
        return Ready(f"merge queue on golden {self.head[:12]}, K={self.config.k}",
                     golden=self.head, k=self.config.k, waiting=waiting)  # fmt: skip

    def terminate(self, reason: str) -> None:
        for live in self.live.values():
            if live.run is not None:
                live.run.cancel()
        if self.publisher is not None:
            self.publisher.close()
        if self.store is not None:
            self.store.close()

    # -- the pipeline ---------------------------------------------------------------------

    def _ordered(self) -> list[Entry]:
        assert self.store is not None
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
        entries = self._ordered()
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
                    self._decide(by_id[pid], "accepted", landed_hash=by_id[pid].tip)
                    changed = True
                case pipeline.Reject(patch_id=pid, reason=reason, detail=detail):
                    if reason == "tests" and self.live[pid].failure == "gauntlet":
                        reason, detail = "gauntlet", "the gauntlet's cheat detection refused it"
                    elif reason == "tests" and self.golden_state == "red":
                        detail += " (golden is red: only a patch that turns it green lands)"
                    self._decide(by_id[pid], "rejected", reason=reason, detail=detail,
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
        self._decide(entries[0], "accepted", landed_hash=self.head)
        return True

    def _build(self, entry: Entry, base: str) -> None:
        assert self.repo is not None
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
        assert self.loop is not None and self.repo is not None
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
            assert self.loop is not None
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
        assert self.loop is not None and self.repo is not None
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
                self._decide(entry, "rejected", reason="stale", detail=WITHDRAWN)
            self._head_doubt = True
            assert self.loop is not None  # golden moved under us, or did not answer:
            self.loop.after(0.0 if isinstance(exc, control.RemoteError) else RETRY_S,
                            self._reconcile)  # read HEAD, then rebuild  # fmt: skip
            return
        assert spec.tip is not None
        self.head = spec.tip
        self.golden_state = "green"
        live = self.live.get(entry.patch_id)
        if live is not None and live.generation == generation and live.result_at:
            self.landing_ms.append((time.monotonic() - live.result_at) * 1000.0)
        self._decide(entry, "accepted", landed_hash=spec.tip)
        self.pump()

    def _decide(self, entry: Entry, state: str, *, reason: str = "", detail: str = "",
                output: str = "", landed_hash: str = "") -> None:  # fmt: skip
        assert self.store is not None
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
            self._publish(PatchAccepted(GitHash(landed_hash), entry.patch_id))
            for loser in self.store.waiting() if entry.group else []:
                if loser.group == entry.group:
                    self._decide(loser, "rejected", reason="stale",
                                 detail=f"{entry.patch_id} of group {entry.group!r} landed "
                                        "first")  # fmt: skip
        else:
            self._publish(PatchRejected(reason, entry.patch_id))
        decided = self.store.get(entry.patch_id)
        for waiter in self.waiters.pop(entry.patch_id, []):
            if decided is not None:
                waiter.resolve(decided.to_dict())

    def _publish(self, signal: Signal) -> None:
        if self.publisher is None:
            return
        try:
            self.publisher.publish(signal, timeout=PUBLISH_TIMEOUT_S)
        except BusError as exc:  # the decision is in SQLite; a signal only says "look"
            report("publish_failed", reason=str(exc))

    def _reconcile(self) -> None:
        """Read golden HEAD (in a worker); a move nobody told us of rebuilds the queue."""
        if self._reconciling or self.loop is None:
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
            self._reconcile()
        self.pump()

    # -- control --------------------------------------------------------------------------

    def calls(self) -> Mapping[str, Call]:
        return {"propose": self.do_propose, "wait": self.do_wait, "cancel": self.do_cancel,
                "landed": self.do_landed, "show": self.do_show, "queue": self.do_queue,
                "status": self.do_status}  # fmt: skip

    def do_propose(self, args: dict[str, Any]) -> Deferred:
        assert self.store is not None and self.repo is not None and self.loop is not None
        source, ref = _text(args, "source"), str(args.get("ref") or "HEAD")
        base = args.get("base")
        if base is not None:
            base = _hash(base, "base")
        priority = args.get("priority", 2)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 4:
            raise BadRequest(f"priority must be an integer 0..4 (0 first), got {priority!r:.20}")
        key, bead_id = str(args.get("key") or ""), str(args.get("bead_id") or "")
        title, group = str(args.get("title") or "")[:200], str(args.get("group") or "")
        store, repo, head = self.store, self.repo, self.head
        patch_id = store.add(source=source, ref=ref, priority=priority, key=key,
                             bead_id=bead_id, title=title, now=time.time(),
                             group=group)  # fmt: skip

        def fetch() -> tuple[str, str, str]:
            tip = repo.fetch(source, ref, patch_id)
            found = base or repo.merge_base(tip, head)
            return tip, found, repo.diffstat(found, tip)

        outer = Deferred()

        def fetched(d: Deferred) -> None:
            try:
                tip, found_base, stat = d.result()
            except GitError as exc:
                store.drop(patch_id)
                outer.fail(control.RequestRefused(f"cannot take the patch: {exc}", "bad_patch"))
                return
            outer.resolve(self._enqueue(patch_id, key, tip, found_base, stat))

        self.loop.run_in_thread(fetch).add_done_callback(fetched)
        return outer

    def _enqueue(self, patch_id: str, key: str, tip: str, base: str, stat: str) -> dict[str, Any]:
        assert self.store is not None
        for older in self.store.by_key(key) if key else []:
            if older.patch_id == patch_id or older.state not in ("queued", "accepted"):
                continue
            if older.tip == tip:  # the same commits again (a loop restarted): that patch
                self.store.drop(patch_id)
                return older.to_dict()
            if older.state == "queued":
                self._decide(older, "rejected", reason="stale", detail=f"superseded by {patch_id}")
        self.store.fetched(patch_id, tip, base)
        self.counts["proposed"] += 1
        entry = self.store.get(patch_id)
        assert entry is not None
        report("proposed", patch_id=patch_id, key=key, tip=tip, base=base)
        self._publish(PatchProposed(patch_id, GitHash(base), stat, entry.source))
        self.pump()
        entry = self.store.get(patch_id)
        assert entry is not None
        return entry.to_dict()

    def _entry(self, args: dict[str, Any]) -> Entry:
        assert self.store is not None
        entry = self.store.get(_text(args, "patch_id"))
        if entry is None or entry.state == "fetching":
            raise control.RequestRefused(f"no patch {args.get('patch_id')!r}", "not_found")
        return entry

    def do_wait(self, args: dict[str, Any]) -> Any:
        assert self.loop is not None and self.store is not None
        entry = self._entry(args)
        timeout_s = args.get("timeout_s", 60.0)
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, (int, float))
            or not (0 <= timeout_s <= MAX_WAIT_S)
        ):
            raise BadRequest(f"timeout_s must be 0..{MAX_WAIT_S} seconds, got {timeout_s!r:.20}")
        if entry.decided or timeout_s == 0:
            return entry.to_dict()
        waiter = Deferred()
        self.waiters.setdefault(entry.patch_id, []).append(waiter)
        store, patch_id = self.store, entry.patch_id

        def timed_out() -> None:
            if not waiter.done:
                if waiter in self.waiters.get(patch_id, []):
                    self.waiters[patch_id].remove(waiter)
                now = store.get(patch_id)
                waiter.resolve(now.to_dict() if now is not None else entry.to_dict())

        self.loop.after(float(timeout_s), timed_out)
        return waiter

    def do_cancel(self, args: dict[str, Any]) -> Any:
        assert self.store is not None
        entry = self._entry(args)
        if self.landing == entry.patch_id:  # golden may be moving to it: the answer decides
            self.withdraw_after_landing.add(entry.patch_id)
            waiter = Deferred()
            self.waiters.setdefault(entry.patch_id, []).append(waiter)
            return waiter
        if not entry.decided:
            self._decide(entry, "rejected", reason="stale", detail=WITHDRAWN)
            self.pump()
        decided = self.store.get(entry.patch_id)
        assert decided is not None
        return decided.to_dict()

    def do_landed(self, args: dict[str, Any]) -> Any:
        assert self.loop is not None and self.repo is not None
        entry, repo, socket = self._entry(args), self.repo, self.golden_socket
        if entry.state != "accepted":
            return {"patch_id": entry.patch_id, "landed_hash": "", "golden_head": self.head,
                    "landed": False, "state": entry.state}  # fmt: skip

        def check() -> dict[str, Any]:
            head = control.call(socket, "get_hash", {}, timeout=GOLDEN_TIMEOUT_S)["hash"]
            landed = repo.is_ancestor(entry.landed_hash, head)
            return {"patch_id": entry.patch_id, "landed_hash": entry.landed_hash,
                    "golden_head": head, "landed": landed, "state": entry.state}  # fmt: skip

        return self.loop.run_in_thread(check)

    def do_show(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._entry(args).to_dict(full_output=True)

    def do_queue(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None
        entries, heads, rows = self._ordered(), [], []
        for position, entry in enumerate(entries):
            live = self.live[entry.patch_id]
            spec = live.spec
            row = entry.to_dict()
            row.update(position=position, build=_build_state(live, self.landing == entry.patch_id))
            if spec is not None:
                row["spec"] = {"base": spec.base, "tip": spec.tip, "detail": spec.detail}
                if spec.in_chain and live.green is not False:
                    heads.append(spec.tip)
            rows.append(row)
        stored = {f"db_{state}": n for state, n in self.store.counts().items()}
        return {"golden": {"hash": self.head, "state": self.golden_state}, "k": self.config.k,
                "entries": rows, "speculative_heads": heads,
                "recent": [e.to_dict() for e in self.store.recent(10)],
                "counts": {**self.counts, **stored}}  # fmt: skip

    def do_status(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None
        return {"pid": os.getpid(), "golden": self.head, "golden_state": self.golden_state,
                "k": self.config.k, "test_command": list(self.config.test_command),
                "suite_timeout_s": self.config.suite_timeout_s, "counts": dict(self.counts),
                "waiting": len(self.store.waiting()), "free_slots": len(self.free_slots),
                "landing_ms": [round(ms, 1) for ms in self.landing_ms],
                "runs": list(self.run_log)}  # fmt: skip


def _entered_key(live: Live) -> float:
    return math.inf if live.entered is None else float(live.entered)


def _build_state(live: Live, landing: bool) -> str:
    if landing:
        return "landing"
    if live.spec is None:
        return "waiting"
    if live.spec.tip is None:
        return "conflict"
    if live.spec.empty:
        return "empty"
    if live.run is not None:
        return "testing"
    return {None: "built", True: "passed", False: "failed"}[live.green]


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is required (a non-empty string), got {value!r:.60}")
    return value


def _hash(value: Any, name: str) -> str:
    try:
        return str(GitHash.parse(value if isinstance(value, str) else ""))
    except InvalidValue:
        raise BadRequest(f"{name} must be a 40-hex commit hash, got {value!r:.60}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description="the merge queue service")
    p.add_argument("--runtime-dir", help="the control sockets and the bus (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help=f"where {DB_NAME} and the queue's repo live")
    p.add_argument("--k", type=int, default=4, help="patches tested at once (speculative depth)")
    p.add_argument("--test-command", default=DEFAULT_TEST_COMMAND, help="the suite (shell words)")
    p.add_argument("--suite-timeout-s", type=float, default=600.0)
    p.add_argument("--golden", default="golden", help="the golden master's control socket name")
    p.add_argument("--reconcile-s", type=float, default=5.0, help="read golden HEAD this often")
    p.add_argument(
        "--cheat-detection",
        action="store_true",
        help="after a green suite, the gauntlet's static cheat detection too",
    )
    p.add_argument("--no-bus", action="store_true", help="publish nothing (tests, by hand)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime, state = paths.runtime_dir(args.runtime_dir), paths.state_dir(args.state_dir)
    command = tuple(shlex.split(args.test_command))
    if not command or args.k < 1 or not args.suite_timeout_s > 0 or not args.reconcile_s > 0:
        report("start_failed", reason="--k >= 1, --suite-timeout-s and --reconcile-s > 0, "
                                      "--test-command non-empty")  # fmt: skip
        return 2
    try:
        paths.private_dir(state)
        paths.private_dir(state / SERVICE)
    except OSError as exc:
        report("start_failed", reason=str(exc))
        return 1
    config = QueueConfig(k=args.k, test_command=command, suite_timeout_s=args.suite_timeout_s,
                         golden=args.golden, reconcile_s=args.reconcile_s,
                         publish=not args.no_bus,
                         cheat_detection=args.cheat_detection)  # fmt: skip
    return serve(MergeQueue(config, state / DB_NAME, state / SERVICE, runtime), runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
