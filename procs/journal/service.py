"""The signal journal writer: subscribes to every signal and stores it in SQLite.

    python3 -m procs.journal.service [--runtime-dir DIR] [--state-dir DIR] [--keep-rows N]

Run by factoryd after the bus broker (target = "procs.journal.service:main"). Writes
<state_dir>/signals.sqlite3 (schema in ipc/journal.py), one transaction per batch of
whatever has arrived, so a 10,000-signal burst costs a few commits. Malformed and
unknown messages are counted (table writer_stats), never stored; only the newest
--keep-rows signals are kept. SIGTERM/SIGINT flush and stop. Signals sent while it is
down are not in the journal: pub/sub does not queue for absent subscribers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import zmq

from ipc import paths, service_report
from ipc.bus import BusEndpoints, BusError, Subscriber
from ipc.journal import JournalError, JournalWriter, journal_path
from ipc.service import Call, Ready, Service, ServiceLoop, StartFailed, Timer, serve

SERVICE = "signal_journal"
MAX_BATCH = 5000
DRAIN_BATCHES = 20  # then back to the loop, so a stop request is seen within a second
DEFAULT_KEEP_ROWS = 1_000_000


def report(event: str, **fields: Any) -> None:
    """One structured record per line on stderr (the supervisor's log)."""
    service_report.report(SERVICE, event, **fields)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signal_journal", description=__doc__)
    parser.add_argument("--runtime-dir", help="where the bus lives ($FACTORY_RUNTIME_DIR)")
    parser.add_argument("--state-dir", help="where the journal goes ($FACTORY_STATE_DIR)")
    parser.add_argument(
        "--keep-rows",
        type=int,
        default=DEFAULT_KEEP_ROWS,
        help=f"keep only the newest N signals ({DEFAULT_KEEP_ROWS:,})",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.keep_rows < 1:
        report("start_failed", reason=f"--keep-rows must be at least 1, got {args.keep_rows}")
        return 2
    runtime = paths.runtime_dir(args.runtime_dir)
    state = paths.state_dir(args.state_dir)
    try:
        endpoints = BusEndpoints.in_runtime_dir(runtime)
        writer = JournalWriter(journal_path(state))
    except (BusError, JournalError, OSError) as exc:
        report("start_failed", reason=str(exc))
        return 1
    return serve(Journal(endpoints, writer, keep_rows=args.keep_rows), runtime)


class Journal(Service):
    """Stores every signal that arrives, keeping the newest `keep_rows`; `status` tells
    the counters."""

    name = SERVICE
    STATS_PERIOD_S = 1.0

    def __init__(self, endpoints: BusEndpoints, writer: JournalWriter, *, keep_rows: int) -> None:
        self.endpoints = endpoints
        self.writer = writer
        self.keep_rows = keep_rows
        self.subscriber: Subscriber | None = None
        self.stored = 0
        self._saved_stats: dict[str, int] = {}
        self._again: Timer | None = None

    def init(self, loop: ServiceLoop) -> Ready:
        try:
            self.subscriber = Subscriber(self.endpoints)
        except BusError as exc:
            raise StartFailed(str(exc)) from None
        loop.watch(self.subscriber.socket, zmq.POLLIN, lambda _ev: self._store(loop))
        loop.every(self.STATS_PERIOD_S, self._save_stats)
        return Ready(
            "journaling", journal=str(self.writer.path), subscribe=self.endpoints.subscribe
        )

    def _store(self, loop: ServiceLoop) -> None:
        """Store what arrived, a bounded amount per turn (a flood cannot hide a stop)."""
        assert self.subscriber is not None
        self._again = None
        added, more = drain(self.subscriber, self.writer)
        if added:
            self.stored += added
            self.writer.prune(self.keep_rows)
        if more and self._again is None:  # taken in already: poll no longer sees it
            self._again = loop.after(0.0, lambda: self._store(loop))
        self._save_stats()

    def _stats(self) -> dict[str, int]:
        assert self.subscriber is not None
        return {
            **self.subscriber.statistics(),
            "stored": self.stored,
            "too_large": self.writer.too_large,
        }

    def _save_stats(self) -> None:
        stats = self._stats()
        if stats != self._saved_stats:
            self.writer.save_stats(stats)
            self._saved_stats = stats

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.status}

    def status(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"journal": str(self.writer.path), "keep_rows": self.keep_rows, **self._stats()}

    def terminate(self, reason: str) -> None:
        try:
            if self.subscriber is not None:
                self.stored += drain(self.subscriber, self.writer)[0]  # one bounded helping
                self.writer.save_stats(self._stats())
                report("stopped", reason=reason, **self._stats())
                self.subscriber.close()
        finally:
            self.writer.close()


def drain(
    subscriber: Subscriber, writer: JournalWriter, *, max_batches: int = DRAIN_BATCHES
) -> tuple[int, bool]:
    """Store what has already arrived, at most `max_batches` batches, so that a flood
    cannot keep the loop from a stop request; returns (rows added, whether it stopped
    at that bound with more perhaps waiting)."""
    added = 0
    for _ in range(max_batches):
        batch = subscriber.recv_many(MAX_BATCH, timeout=0)
        if not batch:
            return added, False
        added += writer.append_many(batch)
    return added, True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
