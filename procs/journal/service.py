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
from typing import Any

import zmq

from ipc import paths, service_report
from ipc.bus import BusEndpoints, BusError, Subscriber
from ipc.journal import JournalError, JournalWriter, journal_path
from ipc.posix_signals import StopSignals

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
    try:
        return run(endpoints, writer, keep_rows=args.keep_rows)
    finally:
        writer.close()


def run(endpoints: BusEndpoints, writer: JournalWriter, *, keep_rows: int) -> int:
    """Journal until SIGTERM/SIGINT, keeping the newest `keep_rows` signals."""
    with StopSignals() as stop, Subscriber(endpoints) as subscriber:
        poller = zmq.Poller()
        poller.register(subscriber.socket, zmq.POLLIN)
        poller.register(stop.fileno(), zmq.POLLIN)
        saved_stats: dict[str, int] = {}
        stored = 0
        service_report.ready(
            SERVICE, "journaling", journal=str(writer.path), subscribe=endpoints.subscribe
        )
        more = False  # signals already taken in may be waiting where poll does not look
        while not stop.requested:
            events = dict(poller.poll(timeout=0 if more else 1000))  # bounded, as every wait
            if stop.fileno() in events:
                stop.drain()
            added, more = drain(subscriber, writer)
            if added:
                stored += added
                writer.prune(keep_rows)
            stats = {**subscriber.statistics(), "stored": stored}
            if stats != saved_stats:
                writer.save_stats(stats)
                saved_stats = stats
        stored += drain(subscriber, writer)[0]  # one bounded helping more, then stop
        writer.save_stats({**subscriber.statistics(), "stored": stored})
        report("stopped", stored=stored, **subscriber.statistics())
    return 0


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
