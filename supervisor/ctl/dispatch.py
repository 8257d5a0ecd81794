"""Show the dispatcher, or pause and resume it (an operator's drain before maintenance).

CLI:  factoryctl dispatch [--json]
      factoryctl dispatch pause [--reason TEXT] [--json]
      factoryctl dispatch resume [--json]
Wire (to dispatcher.sock):
    {"command": "status", "args": {}} -> {paused: {reason, at} | null, last_round,
        watching: {loop id: pid}, records, last_error, ...}
    {"command": "pause", "args": {"reason": TEXT}} -> {paused: {reason, at}}
    {"command": "resume", "args": {}} -> {resumed: bool}
Paused, the dispatcher starts no new loops; running loops go on, and a dead one is still
resumed. The pause is kept across restarts until `resume`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import duration, write_json

HELP = "show the dispatcher, or pause/resume starting loops for ready beads"
ENDPOINT = "dispatcher"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("status", "pause", "resume"),
                        default="status", help="status (default), pause or resume")  # fmt: skip
    parser.add_argument("--reason", help="why dispatching is paused (shown in status)")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.action == "pause":
        return "pause", ({"reason": args.reason} if args.reason else {})
    return args.action, {}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        write_json(result, out)
        return ExitStatus.SUCCESS
    if args.action == "resume":
        out.write("dispatching resumed\n" if result.get("resumed") else "it was not paused\n")
        return ExitStatus.SUCCESS
    paused = result.get("paused")
    if paused:
        ago = duration(time.time() - float(paused.get("at") or time.time()))
        out.write(f"dispatching PAUSED {ago} ago: {paused.get('reason')}\n")
    else:
        out.write("dispatching\n")
    if args.action == "pause":
        return ExitStatus.SUCCESS
    watching = result.get("watching") or {}
    out.write(f"live loops: {len(watching)}  "
              f"{' '.join(sorted(watching)) if watching else ''}\n".rstrip() + "\n")  # fmt: skip
    last = result.get("last_round")
    if last and last.get("held"):
        out.write(f"no new loops: {last['held']}\n")
    if last:
        out.write(f"last round {duration(time.time() - last['at'])} ago: "
                  f"{len(last.get('started') or [])} started, ready {last.get('ready')}, "
                  f"free slots {last.get('free_slots')}\n")  # fmt: skip
    if result.get("last_error"):
        out.write(f"last error: {result['last_error']}\n")
    return ExitStatus.SUCCESS
