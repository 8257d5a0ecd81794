"""Start a stopped child (OTP restart_child), or a new dynamic child of a
simple_one_for_one supervisor (OTP start_child) with extra arguments.

CLI:  factoryctl start ID [-- EXTRA ARGS...]
Wire: {"command": "start", "args": {"id": ID, "args": [...]}} -> {id, pid, state}
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus

HELP = "start a stopped child, or a dynamic child of a simple_one_for_one supervisor"
ENDPOINT = "factoryd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="child id, or a simple_one_for_one supervisor's id")
    parser.add_argument("extra", nargs="*", help="extra args for a dynamic child (after --)")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "start", {"id": args.id, "args": list(args.extra)}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    out.write(f"{result['id']}: running (pid {result['pid']})\n")
    return ExitStatus.SUCCESS
