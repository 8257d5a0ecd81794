"""Re-read factoryd's config file and apply the difference (same as SIGHUP).

Removed children are stopped, changed ones restarted with their new spec, new ones
started; untouched children keep running. A bad config changes nothing.

CLI:  factoryctl reload [--json]
Wire: {"command": "reload", "args": {}}
   -> {changes: {removed, replaced, added, flags_changed, nested}, failures, notes}
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import write_json

HELP = "re-read the config and apply the difference"
ENDPOINT = "factoryd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "reload", {}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        write_json(result, out)
    else:
        changes = result["changes"]
        out.write("reloaded: " + (_describe(changes) or "no change") + "\n")
        for note in result["notes"]:
            out.write(f"note: {note}\n")
        for failure in result["failures"]:
            out.write(f"failed to start {failure}\n")
    return ExitStatus.ERROR if result["failures"] else ExitStatus.SUCCESS


def _describe(changes: dict[str, Any], where: str = "") -> str:
    parts = []
    for key in ("removed", "replaced", "added"):
        if key in changes:
            parts.append(f"{where}{key} {', '.join(changes[key])}")
    if changes.get("flags_changed"):
        parts.append(f"{where}flags changed")
    if changes.get("template_changed"):
        parts.append(f"{where}template changed")
    for sup, sub in changes.get("nested", {}).items():
        parts.append(_describe(sub, f"{sup}: "))
    return "; ".join(p for p in parts if p)
