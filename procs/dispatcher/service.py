"""The dispatcher: turns ready beads into loop children, one live loop per bead, never
more loops than free loop slots.

    python3 -m procs.dispatcher.service [--golden REPO [--branch B]] [--loops-supervisor loops]
        [--reconcile-s 60] [--max-loops N] [--max-resumes 2] [--retry-base-s 30]
        [--retry-max-s 900] [--call-timeout-s 30] [--start-timeout-s 120]
        [--keep-failed-workspaces] [--runtime-dir DIR] [--state-dir DIR]

Run by factoryd (target = "procs.dispatcher.service:main", after the bus, the beads
service, the governor and the `loops` simple_one_for_one supervisor). A round (rounds.py)
runs at start, on BeadAssigned, LoopComplete, LoopFailed and TestPassing (golden green
again: new loops may start; signals say "look"), when a
loop process it watches exits (a pidfd in the selector: a death is an event), and every
--reconcile-s (a missed signal delays work, never loses it). Rounds run one at a time in
a worker thread; a signal arriving meanwhile asks for one more round.

A round that cannot ask a peer (beads, factoryd, the ledger, loops.sqlite3) stops and is
retried after 1, 2, 4 ... seconds, at most --reconcile-s: an error is never "no work",
and nothing is closed on it. While nothing is ready and no loop runs, the only timer is
the reconcile timer, and no model is ever called.

Loops are started as `start <loops-supervisor> -- --bead B --attempt N --loop-id B.N
--slot-timeout-s 0` (the template's args name the golden repo, the beads file and the
config; the dispatcher saw a free slot, so the loop never waits for one: factoryd's
`start` returns at once either way). A bead is closed only once the commit the loop
landed is an ancestor of golden HEAD: golden is --golden REPO (--branch), else where the
golden master's `get_hash` says (landing.py). A loop frees its own workspace when it ends;
the workspace of one that died past --max-resumes is destroyed when its bead is failed,
or kept with --keep-failed-workspaces (leftovers.py). Records:
<state_dir>/dispatcher.sqlite3.

Control (<runtime_dir>/dispatcher.sock):
    status  {}  -> rounds, the last round, the last error, live loops, watched pids,
                   signals seen, the records' counts and the most recent dispatches
    round   {}  -> {requested: true}: a round now (an operator's "look")
    pause   {reason?} -> {paused: {reason, at}}: start no new loops (running ones go on,
                   a dead one is still resumed) until `resume`; kept across restarts
    resume  {}  -> {resumed: bool}: dispatch again (false: it was not paused); a round now
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import zmq

from ipc import control, paths, service_report
from ipc.bus import BusError, Subscriber
from ipc.service import Call, Deferred, Ready, Service, ServiceLoop, StartFailed, Timer, serve
from procs.dispatcher.landing import GoldenAncestry, LandingUnknown
from procs.dispatcher.leftovers import WorkspaceCleaner
from procs.dispatcher.peers import BeadsPeer, FactorydPeer, LoopRecords, PeerError
from procs.dispatcher.records import DB_NAME, DispatchRecords
from procs.dispatcher.rounds import Dispatcher, RoundConfig, RoundResult

SERVICE = "dispatcher"
SIGNALS = ("BeadAssigned", "LoopComplete", "LoopFailed", "TestPassing")  # green: go on
FIRST_RETRY_S = 1.0
DRAIN_SIGNALS = 256
DRAIN_BATCHES = 16
ROUND_ERRORS = (PeerError, LandingUnknown, sqlite3.Error, OSError)


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


class DispatcherService(Service):
    name = SERVICE
    workers = 1  # one round at a time
    max_queued = 2
    drain_s = 5.0

    def __init__(self, dispatcher: Dispatcher, runtime: Path, *, reconcile_s: float) -> None:
        self.dispatcher = dispatcher
        self.runtime = runtime
        self.reconcile_s = reconcile_s
        self.loop: ServiceLoop | None = None
        self.subscriber: Subscriber | None = None
        self.watching: dict[str, tuple[int, int]] = {}  # loop id -> (pid, pidfd)
        self.rounds = 0
        self.failed_rounds = 0
        self.errors_in_a_row = 0
        self.last_round: dict[str, Any] | None = None
        self.last_error: str | None = None
        self.signals: dict[str, int] = dict.fromkeys(SIGNALS, 0)
        self._running = False
        self._again = False
        self._retry: Timer | None = None

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        try:
            self.subscriber = Subscriber(self.runtime, types=SIGNALS)
        except BusError as exc:
            raise StartFailed(str(exc)) from None
        loop.watch(self.subscriber.socket, zmq.POLLIN, self._on_signals)
        loop.every(self.reconcile_s, self.request_round)
        loop.after(0.0, self.request_round)  # at start: reconcile claims against live loops
        return Ready("dispatching", records=str(self.dispatcher.records.path),
                     reconcile_s=self.reconcile_s)  # fmt: skip

    def terminate(self, reason: str) -> None:
        for loop_id in list(self.watching):
            self._unwatch(loop_id)
        if self.subscriber is not None:
            self.subscriber.close()
        report("stopped", reason=reason, rounds=self.rounds, failed_rounds=self.failed_rounds)

    # -- what asks for a round ---------------------------------------------------------

    def _on_signals(self, _events: int) -> None:
        assert self.subscriber is not None
        seen = 0
        for _ in range(DRAIN_BATCHES):  # what arrived: a signal only says "look"
            batch = self.subscriber.recv_many(DRAIN_SIGNALS, timeout=0)
            for envelope in batch:
                self.signals[envelope.type] = self.signals.get(envelope.type, 0) + 1
            seen += len(batch)
            if len(batch) < DRAIN_SIGNALS:
                break
        if seen:
            self.request_round()

    def request_round(self, *, now: bool = False) -> None:
        """A round now, or one more after the one running. After a failed round its
        retry's backoff holds (signals and the timer wait for it) unless `now`."""
        if self._running:
            self._again = True
            return
        if self._retry is not None:
            if not now:
                return  # the retry is due in its time: no hammering a peer that is down
            self._retry.cancel()
            self._retry = None
        assert self.loop is not None
        try:
            deferred = self.loop.run_in_thread(self.dispatcher.round)
        except control.RequestRefused as exc:  # busy: the timer comes back
            report("round_not_started", reason=str(exc))
            return
        self._running = True
        deferred.add_done_callback(self._round_done)

    def _round_done(self, deferred: Deferred) -> None:
        self._running = False
        self.rounds += 1
        try:
            result: RoundResult = deferred.result()
        except ROUND_ERRORS as exc:
            self._round_failed(exc)
        else:
            if self.errors_in_a_row:
                report("round_recovered", after_errors=self.errors_in_a_row)
            self.errors_in_a_row = 0
            self.last_error = None
            self.last_round = {"at": time.time(), "started": result.started,
                               "ended": result.ended, "live": result.live,
                               "free_slots": result.free_slots, "ready": result.ready,
                               "waiting_for_slot": result.waiting_for_slot,
                               "paused": result.paused, "held": result.held}  # fmt: skip
            self._watch(result.watch)
        if self._again:
            self._again = False
            self.request_round()

    def _round_failed(self, exc: BaseException) -> None:
        """Reported, retried after 1, 2, 4 ... s (at most the reconcile period)."""
        self.failed_rounds += 1
        self.errors_in_a_row += 1
        self.last_error = str(exc)
        delay = min(self.reconcile_s, FIRST_RETRY_S * 2 ** min(self.errors_in_a_row - 1, 20))
        report("round_failed", reason=str(exc), kind=type(exc).__name__,
               in_a_row=self.errors_in_a_row, retry_in_s=delay)  # fmt: skip
        self._again = False  # what asked meanwhile waits for the retry
        if self.loop is not None:
            if self._retry is not None:
                self._retry.cancel()
            self._retry = self.loop.after(delay, self._retry_due)

    def _retry_due(self) -> None:
        self._retry = None
        self.request_round()

    # -- loop processes: their exits are events ----------------------------------------

    def _watch(self, wanted: Mapping[str, int]) -> None:
        for loop_id in [k for k, (pid, _) in self.watching.items() if wanted.get(k) != pid]:
            self._unwatch(loop_id)
        assert self.loop is not None
        for loop_id, pid in wanted.items():
            if loop_id in self.watching:
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:  # gone already: look again
                self._again = True
                continue
            self.watching[loop_id] = (pid, fd)
            self.loop.watch(fd, zmq.POLLIN, self._on_exit(loop_id))

    def _on_exit(self, loop_id: str) -> Callable[[int], None]:
        def exited(_events: int) -> None:
            self._unwatch(loop_id)
            self.request_round()

        return exited

    def _unwatch(self, loop_id: str) -> None:
        _, fd = self.watching.pop(loop_id)
        if self.loop is not None:
            self.loop.unwatch(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    # -- control -------------------------------------------------------------------------

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.do_status, "round": self.do_round, "pause": self.do_pause,
                "resume": self.do_resume}  # fmt: skip

    def do_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        reason = args.get("reason", "paused by an operator")
        if not isinstance(reason, str) or not reason.strip():
            raise control.RequestRefused("pause: 'reason' must be a non-empty string",
                                         "bad_request")  # fmt: skip
        paused = self.dispatcher.records.pause(reason.strip())
        report("paused", reason=paused["reason"])
        return {"paused": paused}

    def do_resume(self, _args: dict[str, Any]) -> dict[str, Any]:
        resumed = self.dispatcher.records.resume()
        if resumed:
            report("resumed")
            self.request_round(now=True)
        return {"resumed": resumed}

    def do_round(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.request_round(now=True)
        return {"requested": True}

    def do_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        records = self.dispatcher.records  # (sqlite3 here is serialized: threadsafety 3)
        return {
            "pid": os.getpid(), "rounds": self.rounds, "failed_rounds": self.failed_rounds,
            "round_running": self._running, "last_round": self.last_round,
            "last_error": self.last_error, "reconcile_s": self.reconcile_s,
            "watching": {k: pid for k, (pid, _) in self.watching.items()},
            "signals": dict(self.signals), "records": records.statistics(),
            "paused": records.paused(),
            "recent": records.recent(),
        }  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description=__doc__.split("\n")[0])
    p.add_argument(
        "--golden",
        type=Path,
        help="the golden repository, read only (default: the golden master's)",
    )
    p.add_argument("--branch", help="golden's branch (default: its checked-out branch)")
    p.add_argument("--loops-supervisor", default="loops", help="the simple_one_for_one id")
    p.add_argument("--reconcile-s", type=float, default=60.0, help="a round at least this often")
    p.add_argument("--max-loops", type=int, help="at most this many live loops (besides slots)")
    p.add_argument("--max-resumes", type=int, default=2, help="restarts of a dead loop")
    p.add_argument("--retry-base-s", type=float, default=30.0, help="a failed bead's first wait")
    p.add_argument("--retry-max-s", type=float, default=900.0, help="its longest wait")
    p.add_argument("--call-timeout-s", type=float, default=30.0, help="beads and factoryd calls")
    p.add_argument("--start-timeout-s", type=float, default=120.0, help="a loop's start call")
    p.add_argument(
        "--keep-failed-workspaces",
        action="store_true",
        help="keep the workspace of a loop that died (default: destroy it)",
    )
    p.add_argument("--runtime-dir", help="sockets, the bus, the ledger (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help=f"{DB_NAME}, loops.sqlite3 (FACTORY_STATE_DIR)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime = paths.runtime_dir(args.runtime_dir)
    state = paths.state_dir(args.state_dir)
    positive = (args.reconcile_s, args.retry_base_s, args.retry_max_s, args.call_timeout_s,
                args.start_timeout_s)  # fmt: skip
    if not all(v > 0 for v in positive) or args.max_resumes < 0 or (args.max_loops or 1) < 1:
        report("start_failed", reason="durations must be > 0, --max-resumes >= 0, "
               "--max-loops >= 1")  # fmt: skip
        return 2
    golden = GoldenAncestry(runtime, repo=args.golden.resolve() if args.golden else None,
                            branch=args.branch)  # fmt: skip
    try:
        if args.golden is not None:
            golden.where()  # a repository not on a branch is bad input, said at start
        paths.private_dir(state)
        records = DispatchRecords(state / DB_NAME)
    except (LandingUnknown, OSError, sqlite3.Error) as exc:
        report("start_failed", reason=str(exc))
        return 1
    dispatcher = Dispatcher(
        beads=BeadsPeer(runtime, timeout_s=args.call_timeout_s),
        factoryd=FactorydPeer(runtime, supervisor=args.loops_supervisor,
                              timeout_s=args.call_timeout_s,
                              start_timeout_s=args.start_timeout_s),
        loops=LoopRecords(state), records=records, golden=golden,
        runtime=runtime, report=report,
        cleaner=WorkspaceCleaner(runtime, state / "loop-workspaces", state=state,
                                 keep_failed=args.keep_failed_workspaces),
        config=RoundConfig(max_resumes=args.max_resumes, max_loops=args.max_loops,
                           retry_base_s=args.retry_base_s, retry_max_s=args.retry_max_s),
    )  # fmt: skip
    try:
        return serve(DispatcherService(dispatcher, runtime, reconcile_s=args.reconcile_s), runtime)
    finally:
        dispatcher.loops.close()
        records.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
