"""Show a child's last output lines (stdout and stderr, kept by factoryd).

CLI:  factoryctl logs ID [-n 50] [--json]
Wire: {"command": "logs", "args": {"id": ID, "lines": 50}} -> {id, lines: [[ts, text], ...]}
"""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import write_json

HELP = "show a child's recent output"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="child id")
    parser.add_argument("-n", "--lines", type=int, default=50, help="how many lines (50)")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "logs", {"id": args.id, "lines": args.lines}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        write_json(result, out)
        return ExitStatus.SUCCESS
    for ts, text in result["lines"]:
        stamp = time.strftime("%H:%M:%S", time.localtime(ts))
        out.write(f"{stamp} {text}\n")
    return ExitStatus.SUCCESS
