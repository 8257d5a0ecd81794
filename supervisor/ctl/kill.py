"""Send a signal to a worker's whole process group (default SIGKILL).

The supervisor then sees the exit and applies the restart policy, exactly as for a
crash: this is how an operator tests the tree.

CLI:  factoryctl kill ID [--signal TERM]
Wire: {"command": "kill", "args": {"id": ID, "signal": "SIGTERM"}} -> {id, pid, signal}
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus

HELP = "signal a worker's process group (default SIGKILL)"
ENDPOINT = "factoryd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="child id")
    parser.add_argument("-s", "--signal", default="KILL", help="signal name (default KILL)")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "kill", {"id": args.id, "signal": args.signal}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    out.write(f"sent {result['signal']} to {result['id']} (pid {result['pid']})\n")
    return ExitStatus.SUCCESS
