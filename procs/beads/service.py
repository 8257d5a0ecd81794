"""The beads service: the only reader and writer of the beads store.

    python3 -m procs.beads.service [--jsonl .beads/issues.jsonl] [--bd auto|never|always]
        [--max-attempts 3] [--reconcile-s 30] [--runtime-dir DIR] [--state-dir DIR]

Run by factoryd (target = "procs.beads.service:main"). With `bd` on PATH (--bd auto, the
default) it goes through bd; otherwise it reads and writes the JSONL export, which it
watches with inotify (its directory, as writers replace the file by rename). On every
change, and every --reconcile-s, it reads the store again and publishes BeadAssigned for
each bead that became dispatchable (ready and unassigned) since the last reading; a bead
that leaves the set and comes back is announced again. Signals only say "look": the
dispatcher asks `ready` and `claim` here.

Claims live in <state_dir>/beads.sqlite3 (procs.beads.claims) and survive restarts; at
start the claims a crash left half-made are settled against the store.

Control (<runtime_dir>/beads.sock):
    ready    {unassigned?: bool}              -> {ready: [bead], malformed_lines, malformed,
                                                  source, notes}
    list     {}                               -> {ready, claimed, blocked, malformed_lines,
                                                  source, error, notes}
    show     {bead_id}                        -> {id, title, status, requirements, record}
    claim    {bead_id, loop_id}               -> claim {bead_id, generation, actor, ...}
    close    {bead_id, loop_id, generation?, reason?, stats?}  -> claim
    fail     {bead_id, loop_id, generation?, reason}           -> {claim, status}
    release  {bead_id, loop_id, generation?, reason?}          -> claim
    status   {}                               -> counters, the last reading, the last error
Errors: `conflict` (another loop holds it, or the store's CAS failed), `stale` (not the
live generation), `store_error` (the store could not be read or written: never "no
work"), `bad_request`. Store calls run one at a time in a worker thread (bd may take
seconds), so the control socket stays responsive.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ipc import control, paths, service_report
from ipc.bus import BusError, Publisher
from ipc.service import BadRequest, Call, Deferred, Ready, Service, ServiceLoop, serve
from ipc.service import StartFailed as ServiceStartFailed
from procs.beads import bd as bd_cli
from procs.beads.announce import Announcements, bead_assigned
from procs.beads.claims import AlreadyClaimed, ClaimError, ClaimLedger, StaleClaim
from procs.beads.edits import Refused
from procs.beads.jsonl import StoreError
from procs.beads.keeper import BadLoopId, BeadKeeper
from procs.beads.ready import Bead
from procs.beads.store import Backend, JsonlBackend, View
from procs.beads.text import requirements
from procs.beads.watch import StoreWatch

SERVICE = "beads"
DB_NAME = "beads.sqlite3"
PUBLISH_TIMEOUT_S = 1.0
BUS_RETRY_S = 0.5


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


class BeadsService(Service):
    name = SERVICE
    workers = 1  # the store and the claims database, one call at a time
    max_queued = 64
    drain_s = 10.0  # a write in flight finishes; a longer bd call is settled at restart

    def __init__(
        self,
        backend: Backend,
        ledger_path: Path,
        runtime: Path,
        *,
        max_attempts: int,
        reconcile_s: float,
        watch: Path | None,
        publish: bool = True,
    ) -> None:
        self.backend = backend
        self.ledger_path = ledger_path
        self.runtime = runtime
        self.max_attempts = max_attempts
        self.reconcile_s = reconcile_s
        self.watch_path = watch
        self.publish_enabled = publish
        self.keeper: BeadKeeper | None = None
        self.loop: ServiceLoop | None = None
        self.watch: StoreWatch | None = None
        self.publisher: Publisher | None = None
        self.announcements = Announcements()
        self.readings = 0
        self.last_view: View | None = None
        self.last_read_at: float | None = None
        self.last_error: str | None = None
        self._reading = False
        self._read_again = False
        self._bus_retry = False

    # -- lifecycle ----------------------------------------------------------------------

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        try:
            ledger = ClaimLedger(self.ledger_path)
        except ClaimError as exc:
            raise ServiceStartFailed(str(exc)) from None
        # the ledger's connection is used by the one worker thread from here on
        self.keeper = BeadKeeper(self.backend, ledger, max_attempts=self.max_attempts)
        for settled in self.keeper.settle():
            report("claim_settled", **settled)
        if self.watch_path is not None:
            if not self.watch_path.parent.is_dir():
                raise ServiceStartFailed(f"{self.watch_path.parent}: no such directory")
            self.watch = StoreWatch(self.watch_path, loop, self.reconcile)
        if self.publish_enabled:
            try:
                self.publisher = Publisher(self.runtime, source=SERVICE)
            except BusError as exc:
                raise ServiceStartFailed(str(exc)) from None
        loop.every(self.reconcile_s, self.reconcile)
        loop.after(0.0, self.reconcile)
        return Ready(
            f"serving beads from {self.backend.name}",
            backend=self.backend.name,
            source=str(self.watch_path or "bd"),
            claims=str(self.ledger_path),
        )

    def terminate(self, reason: str) -> None:
        if self.watch is not None:
            self.watch.close()
        if self.publisher is not None:
            self.publisher.close()
        idle = self.loop is None or self.loop.statistics()["calls_in_flight"] == 0
        if self.keeper is not None and idle:  # a call in flight keeps it for the drain
            self.keeper.ledger.close()
        report("stopped", reason=reason, published=self.announcements.published)

    # -- reading the store and announcing ----------------------------------------------

    def reconcile(self) -> None:
        """Read the store (in the worker) and announce what became dispatchable."""
        if self._reading:
            self._read_again = True
            return
        assert self.loop is not None and self.keeper is not None
        keeper = self.keeper
        try:
            deferred = self.loop.run_in_thread(lambda: keeper.read(listing=False))
        except control.RequestRefused:  # the worker queue is full: the timer comes back
            return
        self._reading = True
        deferred.add_done_callback(self._read_done)

    def _read_done(self, deferred: Deferred) -> None:
        self._reading = False
        try:
            view: View = deferred.result()
        except (StoreError, ClaimError) as exc:
            if str(exc) != self.last_error:
                report("store_unreadable", reason=str(exc))
            self.last_error = str(exc)  # never "no work": what was announced stays
        else:
            self.readings += 1
            self.last_error = None
            before = self.last_view.malformed if self.last_view else []
            if view.malformed and view.malformed != before:  # said once, not every reading
                report("malformed_lines", count=view.malformed_lines, lines=view.malformed[:5])
            self.last_view, self.last_read_at = view, time.time()
            self.announcements.reading(view.dispatchable)
            self._announce()
        if self._read_again:
            self._read_again = False
            self.reconcile()

    def _announce(self) -> None:
        """Publish BeadAssigned for each bead newly dispatchable, once the bus is there."""
        if self.publisher is None or not self.announcements.pending:
            self.announcements.pending.clear()
            return
        publisher = self.publisher
        publisher.drain_subscriptions()
        if publisher.statistics()["subscriptions"] == 0:  # nothing reaches the broker yet
            if not self._bus_retry and self.loop is not None:
                self._bus_retry = True
                self.loop.after(BUS_RETRY_S, self._retry_announce)
            return
        records = self.last_view.records if self.last_view else {}

        def send(bead: Bead) -> None:
            publisher.publish(bead_assigned(bead, records.get(bead.id, {})),
                              timeout=PUBLISH_TIMEOUT_S)  # fmt: skip

        try:
            self.announcements.publish(send)
        except BusError as exc:  # kept pending: the next reading tries again
            report("announce_failed", reason=str(exc), pending=len(self.announcements.pending))

    def _retry_announce(self) -> None:
        self._bus_retry = False
        self._announce()

    # -- control -------------------------------------------------------------------------

    def calls(self) -> Mapping[str, Call]:
        return {
            "ready": self.do_ready,
            "list": self.do_list,
            "show": self.do_show,
            "claim": self.do_claim,
            "close": self.do_close,
            "fail": self.do_fail,
            "release": self.do_release,
            "status": self.do_status,
        }

    def _in_worker(self, fn: Callable[[], Any], after: Callable[[], None] | None = None) -> Any:
        """Run `fn` in the worker; its errors become the uniform refusals."""
        assert self.loop is not None

        def guarded() -> Any:
            try:
                return fn()
            except (AlreadyClaimed, Refused) as exc:
                raise control.RequestRefused(str(exc), "conflict") from None
            except StaleClaim as exc:
                raise control.RequestRefused(str(exc), "stale") from None
            except (StoreError, ClaimError) as exc:
                raise control.RequestRefused(str(exc), "store_error") from None
            except BadLoopId as exc:
                raise BadRequest(str(exc)) from None

        deferred = self.loop.run_in_thread(guarded)
        if after is not None:
            deferred.add_done_callback(lambda _d: after())
        return deferred

    def do_ready(self, args: dict[str, Any]) -> Any:
        assert self.keeper is not None
        keeper, unassigned = self.keeper, bool(args.get("unassigned", False))

        def ready() -> dict[str, Any]:
            view = keeper.read()
            beads = view.dispatchable if unassigned else view.ready
            return {
                "ready": [b.summary() for b in beads],
                "malformed_lines": view.malformed_lines,
                "malformed": view.malformed,
                "source": view.source,
                "notes": view.notes,
            }

        return self._in_worker(ready)

    def do_list(self, args: dict[str, Any]) -> Any:
        assert self.keeper is not None
        return self._in_worker(self.keeper.listing)

    def do_show(self, args: dict[str, Any]) -> Any:
        assert self.keeper is not None
        bead_id = _text_arg(args, "bead_id")
        backend = self.backend

        def show() -> dict[str, Any]:
            if isinstance(backend, bd_cli.BdBackend):
                record: Mapping[str, Any] = backend.show(bead_id)
            else:
                found = backend.read().records.get(bead_id)
                if found is None:
                    raise control.RequestRefused(f"no bead {bead_id!r}", "not_found")
                record = found
            return {
                "id": bead_id,
                "title": str(record.get("title") or ""),
                "status": str(record.get("status") or "open"),
                "requirements": requirements(record),
                "record": dict(record),
            }

        return self._in_worker(show)

    def do_claim(self, args: dict[str, Any]) -> Any:
        assert self.keeper is not None
        keeper = self.keeper
        bead_id, loop_id = _text_arg(args, "bead_id"), _text_arg(args, "loop_id")

        def claim() -> dict[str, Any]:
            done = keeper.claim(bead_id, loop_id)
            report("claimed", bead_id=bead_id, loop_id=loop_id, generation=done.generation)
            return done.to_dict()

        return self._in_worker(claim, after=self.reconcile)

    def do_close(self, args: dict[str, Any]) -> Any:
        assert self.keeper is not None
        keeper = self.keeper
        bead_id, loop_id = _text_arg(args, "bead_id"), _text_arg(args, "loop_id")
        generation = _generation(args)
        reason = str(args.get("reason") or "done")
        stats = args.get("stats") or {}
        if not isinstance(stats, dict):
            raise BadRequest(f"stats must be an object, got {type(stats).__name__}")

        def close() -> dict[str, Any]:
            done = keeper.close(bead_id, loop_id, generation=generation, reason=reason, stats=stats)
            report("closed", bead_id=bead_id, loop_id=loop_id, generation=done.generation)
            return done.to_dict()

        return self._in_worker(close, after=self.reconcile)

    def do_fail(self, args: dict[str, Any]) -> Any:
        assert self.keeper is not None
        keeper = self.keeper
        bead_id, loop_id = _text_arg(args, "bead_id"), _text_arg(args, "loop_id")
        reason, generation = _text_arg(args, "reason"), _generation(args)

        def fail() -> dict[str, Any]:
            done, status = keeper.fail(bead_id, loop_id, reason=reason, generation=generation)
            report("failed", bead_id=bead_id, loop_id=loop_id, status=status, reason=reason)
            return {"claim": done.to_dict(), "status": status}

        return self._in_worker(fail, after=self.reconcile)

    def do_release(self, args: dict[str, Any]) -> Any:
        assert self.keeper is not None
        keeper = self.keeper
        bead_id, loop_id = _text_arg(args, "bead_id"), _text_arg(args, "loop_id")
        reason, generation = str(args.get("reason") or ""), _generation(args)

        def release() -> dict[str, Any]:
            return keeper.release(bead_id, loop_id, reason=reason, generation=generation).to_dict()

        return self._in_worker(release, after=self.reconcile)

    def do_status(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.keeper is not None
        view = self.last_view
        return {
            "pid": os.getpid(),
            "backend": self.backend.name,
            "source": str(self.watch_path) if self.watch_path else "bd",
            "claims_db": str(self.ledger_path),
            "max_attempts": self.max_attempts,
            "reconcile_s": self.reconcile_s,
            "readings": self.readings,
            "last_read_at": self.last_read_at,
            "last_error": self.last_error,
            "ready": len(view.ready) if view else None,
            "dispatchable": len(view.dispatchable) if view else None,
            "malformed_lines": view.malformed_lines if view else None,
            "announced": len(self.announcements.announced),
            "published": self.announcements.published,
            "inotify_events": self.watch.events if self.watch else None,
            "counts": dict(self.keeper.counts),
            "backend_stats": self.backend.statistics(),
        }


def _text_arg(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is required (a non-empty string), got {value!r:.60}")
    return value


def _generation(args: dict[str, Any]) -> int | None:
    value = args.get("generation")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"generation must be a positive integer, got {value!r:.40}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description=__doc__.split("\n")[0])
    p.add_argument("--runtime-dir", help="the control socket and the bus (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help=f"where {DB_NAME} lives (FACTORY_STATE_DIR)")
    p.add_argument("--jsonl", default=".beads/issues.jsonl", help="the JSONL export (no bd)")
    p.add_argument(
        "--bd",
        choices=("auto", "never", "always"),
        default="auto",
        help="use bd: when on PATH (auto), never (the JSONL file), or always",
    )
    p.add_argument("--bd-timeout-s", type=float, default=bd_cli.DEFAULT_TIMEOUT_S)
    p.add_argument("--bd-cwd", help="where bd runs (the repository with .beads/)")
    p.add_argument("--max-attempts", type=int, default=3, help="failures before blocked")
    p.add_argument("--reconcile-s", type=float, default=30.0, help="read the store this often")
    p.add_argument("--no-bus", action="store_true", help="publish nothing (tests, CLI use)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime = paths.runtime_dir(args.runtime_dir)
    state = paths.state_dir(args.state_dir)
    if args.max_attempts < 1 or not args.reconcile_s > 0 or not args.bd_timeout_s > 0:
        report("start_failed", reason="--max-attempts, --reconcile-s, --bd-timeout-s: > 0")
        return 2
    executable = bd_cli.find_bd()
    if args.bd == "always" and executable is None:
        report("start_failed", reason="--bd always, but no bd on PATH")
        return 1
    backend: Backend
    watch: Path | None
    if executable is not None and args.bd != "never":
        backend = bd_cli.BdBackend(executable, timeout_s=args.bd_timeout_s, cwd=args.bd_cwd)
        watch = None
    else:
        watch = Path(os.path.realpath(args.jsonl))  # a symlinked export: watch its target
        backend = JsonlBackend(watch)
    try:
        paths.private_dir(state)
    except OSError as exc:
        report("start_failed", reason=str(exc))
        return 1
    service = BeadsService(
        backend,
        state / DB_NAME,
        runtime,
        max_attempts=args.max_attempts,
        reconcile_s=args.reconcile_s,
        watch=watch,
        publish=not args.no_bus,
    )
    return serve(service, runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
