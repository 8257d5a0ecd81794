"""The beads CLI, which needs no daemon: it reads the store and never writes it.

    python -m procs.beads ready --jsonl FILE [--unassigned] [--json] [--now RFC3339]
    python -m procs.beads show --jsonl FILE ID [--json]

prints the ready beads in dispatch order (priority 0 first, then the oldest). With
--json, one object:

    {"ready": [{"id", "title", "priority", "status", "issue_type", "assignee",
                "created_at"}, ...],
     "malformed_lines": N, "malformed": [{"line", "error", "text"}, ...]}

--unassigned leaves out assigned beads (what the dispatcher may take). `show` prints one
bead's requirements as the loop's prompts take them (title, description, design,
acceptance criteria); with --json {"id", "title", "status", "requirements",
"malformed_lines"}. Exit status 0; 1 for a bead that is not in the file; 2 for a bad
command line or a file that is missing or cannot be read (the message says which and
why; an unreadable store is never an empty ready list).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC
from typing import TextIO

import orjson

from procs.beads.jsonl import StoreError, read_snapshot
from procs.beads.ready import parse_time
from procs.beads.store import JsonlBackend
from procs.beads.text import requirements

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m procs.beads", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ready = sub.add_parser("ready", help="list the ready beads in dispatch order (read-only)")
    ready.add_argument("--jsonl", required=True, help="the beads JSONL export to read")
    ready.add_argument("--unassigned", action="store_true", help="only unassigned beads")
    ready.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ready.add_argument("--now", help="judge defer_until at this RFC 3339 time (default: now)")
    show = sub.add_parser("show", help="one bead's requirements (read-only)")
    show.add_argument("--jsonl", required=True, help="the beads JSONL export to read")
    show.add_argument("id", help="the bead's id")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def main(
    argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed why
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.command == "show":
        return _show(args, out, err)
    backend = JsonlBackend(args.jsonl)
    if args.now is not None:
        now = parse_time(args.now)
        if now is None:
            print(f"beads: --now {args.now!r} is not an RFC 3339 time", file=err)
            return EXIT_USAGE
        backend.clock = lambda: now.astimezone(UTC)
    try:
        view = backend.read()
    except StoreError as exc:
        print(f"beads: {exc}", file=err)
        return EXIT_USAGE
    beads = view.dispatchable if args.unassigned else view.ready
    if args.json:
        body = {
            "ready": [b.summary() for b in beads],
            "malformed_lines": view.malformed_lines,
            "malformed": view.malformed,
        }
        out.write(orjson.dumps(body).decode() + "\n")
        return EXIT_OK
    for bead in beads:
        who = f"  [{bead.assignee}]" if bead.assignee else ""
        out.write(f"{bead.id}  P{bead.priority}  {bead.title}{who}\n")
    if not beads:
        out.write("no ready beads\n")
    for line in view.malformed:
        err.write(f"beads: {args.jsonl}:{line['line']}: skipped: {line['error']}\n")
    return EXIT_OK


def _show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        snap = read_snapshot(args.jsonl)
    except StoreError as exc:
        print(f"beads: {exc}", file=err)
        return EXIT_USAGE
    record = snap.records.get(args.id)
    if record is None:
        print(f"beads: no bead {args.id!r} among {len(snap.records)} in {args.jsonl}", file=err)
        return EXIT_NOT_FOUND
    text = requirements(record)
    if args.json:
        body = {
            "id": args.id,
            "title": str(record.get("title") or ""),
            "status": str(record.get("status") or "open"),
            "requirements": text,
            "malformed_lines": snap.malformed_lines,
        }
        out.write(orjson.dumps(body).decode() + "\n")
    else:
        out.write(text + "\n")
    return EXIT_OK
