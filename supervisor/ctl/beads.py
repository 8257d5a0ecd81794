"""Show the beads: ready (dispatch order), claimed (by which loop), blocked (and why).

CLI:  factoryctl beads [--json]
Wire (to beads.sock): {"command": "list", "args": {}}
   -> {source, error, ready: [{id, title, priority, assignee, ...}],
       claimed: [{bead_id, title, loop_id, actor, generation, state, started_at}],
       blocked: [{id, title, priority, status, reasons: [...]}],
       malformed_lines, malformed: [{line, error, text}], notes}

A store the service cannot read is an error here too (exit 1, the reason printed), never
an empty list.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import duration, write_json

HELP = "show ready, claimed and blocked beads (beads service)"
ENDPOINT = "beads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "list", {}


def _title(value: Any, width: int = 60) -> str:
    text = str(value or "")
    return text if len(text) <= width else text[: width - 1] + "…"


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        write_json(result, out)
        return ExitStatus.ERROR if result.get("error") else ExitStatus.SUCCESS
    if result.get("error"):
        out.write(f"the beads store cannot be read: {result['error']}\n")
    ready = result.get("ready") or []
    out.write(f"READY ({len(ready)}, dispatch order)  source: {result.get('source') or '-'}\n")
    for b in ready:
        who = f"  [{b['assignee']}]" if b.get("assignee") else ""
        out.write(f"  {b['id']:<20} P{b.get('priority', '?')}  {_title(b.get('title'))}{who}\n")
    claimed = result.get("claimed") or []
    out.write(f"\nCLAIMED ({len(claimed)})\n")
    now = time.time()
    for c in claimed:
        since = duration(now - c["started_at"]) if c.get("started_at") else "-"
        out.write(
            f"  {c['bead_id']:<20} loop {c['loop_id']} (gen {c['generation']}, {c['state']}, "
            f"{since})  {_title(c.get('title'), 40)}\n"
        )
    blocked = result.get("blocked") or []
    out.write(f"\nBLOCKED ({len(blocked)})\n")
    for b in blocked:
        out.write(f"  {b['id']:<20} {_title(b.get('title'))}\n")
        for reason in b.get("reasons") or []:
            out.write(f"      {reason}\n")
    malformed = result.get("malformed_lines")
    if malformed:
        out.write(f"\n{malformed} malformed line(s) skipped:\n")
        for m in result.get("malformed") or []:
            out.write(f"  line {m['line']}: {m['error']}\n")
    for note in result.get("notes") or []:
        out.write(f"note: {note}\n")
    return ExitStatus.ERROR if result.get("error") else ExitStatus.SUCCESS
