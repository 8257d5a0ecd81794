"""Show the golden master: its hash, red or green since when, the last failure.

CLI:  factoryctl golden [--json]
Wire (to golden.sock): {"command": "status", "args": {}}
   -> {hash, branch, repo, state (green|red|unknown), since, last_failure: {hash, at,
       output, source} | null, moves: [{hash, previous, reason, patch_id, at}],
       move_count, upstream, push, checks, counts, suite}
Exit status 1 while golden is red.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import duration, write_json

HELP = "show the golden master: hash, red/green since when, last failure"
ENDPOINT = "golden"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "status", {}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    status = ExitStatus.ERROR if result.get("state") == "red" else ExitStatus.SUCCESS
    if args.json:
        write_json(result, out)
        return status
    now = time.time()
    since = f" for {duration(now - result['since'])}" if result.get("since") else ""
    out.write(f"golden {result.get('branch')} at {result.get('hash')}  {result.get('repo')}\n")
    out.write(f"state: {str(result.get('state', '?')).upper()}{since}  "
              f"({result.get('move_count', 0)} moves)\n")  # fmt: skip
    if result.get("upstream"):
        push = ", pushes landed commits" if result.get("push") else ""
        out.write(f"upstream: {result['upstream']}{push}\n")
    failure = result.get("last_failure")
    if failure:
        ago = duration(now - failure["at"]) if failure.get("at") else "-"
        out.write(f"\nlast failure: {str(failure.get('hash'))[:12]}, {ago} ago "
                  f"({failure.get('source')})\n")  # fmt: skip
        for line in str(failure.get("output") or "").strip().splitlines()[-10:]:
            out.write(f"  | {line}\n")
    for move in (result.get("moves") or [])[:5]:
        out.write(f"  {str(move.get('hash'))[:12]} <- {str(move.get('previous'))[:12]}  "
                  f"{move.get('reason')}\n")  # fmt: skip
    return status
