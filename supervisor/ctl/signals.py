"""Show the signal journal: the last signals seen on the bus, or follow new ones.

CLI:  factoryctl signals [--type T ...] [-n 20] [--follow [--for SECONDS]] [--json]
Wire: none; reads <state_dir>/signals.sqlite3 (written by procs/journal, schema
      in ipc/journal.py) read-only. --json prints one JSON object per line:
      {"seq", "received_ts", "type", "id", "ts", "source", ...the signal's fields}
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, TextIO

import orjson

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.follow_args import add_follow_arguments

if TYPE_CHECKING:
    from ipc.journal import JournalEntry
    from supervisor.ctl.cli import CtlContext

READS_STATE_DIR = True  # its databases: factoryctl finds them (cli._state_dir)
HELP = "show or follow the signals seen on the bus"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="T",
        help="only this signal type (repeatable)",
    )
    parser.add_argument("-n", "--lines", type=int, default=20, help="how many to show (20)")
    add_follow_arguments(parser, "signals")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(ctx: CtlContext, args: argparse.Namespace) -> ExitStatus:
    # Imported here, not at the top: the signal codec is most of factoryctl's import
    # time (~25 ms), and only this command needs it.
    from ipc import journal, signals  # noqa: PLC0415

    types = args.types or []
    unknown = [t for t in types if t not in signals.SIGNAL_TYPES]
    if unknown:
        known = ", ".join(sorted(signals.SIGNAL_TYPES))
        ctx.err.write(f"factoryctl: unknown signal type {unknown[0]!r}; known: {known}\n")
        return ExitStatus.USAGE
    if args.lines < 0:
        ctx.err.write(f"factoryctl: -n must be >= 0, got {args.lines}\n")
        return ExitStatus.USAGE
    try:
        reader = journal.JournalReader(journal.journal_path(ctx.state_dir))
    except journal.JournalError as exc:
        ctx.err.write(f"factoryctl: {exc}\n")
        return ExitStatus.NOT_RUNNING
    with reader:
        entries = reader.read(types=types, last=args.lines) if args.lines else []
        for entry in entries:
            _write(entry, args.json, ctx.out)
        if not args.follow:
            return ExitStatus.SUCCESS
        after = entries[-1].seq if entries else reader.last_seq()
        deadline = time.monotonic() + args.for_s
        try:
            for entry in reader.follow(after_seq=after, types=types, deadline=deadline):
                _write(entry, args.json, ctx.out)
                ctx.out.flush()
        except KeyboardInterrupt:
            pass
    return ExitStatus.SUCCESS


def _write(entry: JournalEntry, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(orjson.dumps(entry.as_dict()).decode() + "\n")
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(entry.ts)) + f".{int(entry.ts % 1 * 1000):03d}"
    fields = " ".join(f"{k}={_short(v)}" for k, v in entry.fields().items())
    out.write(f"{entry.seq:>6} {stamp} {entry.type:<20} {entry.source:<20} {fields}\n")


def _short(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = text.replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."
