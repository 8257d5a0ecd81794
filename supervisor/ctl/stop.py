"""Stop a child (OTP terminate_child): SIGTERM its group, wait its shutdown time, SIGKILL.

A stopped permanent or transient child keeps its place and can be started again;
a temporary or dynamic child is forgotten.

CLI:  factoryctl stop ID
Wire: {"command": "stop", "args": {"id": ID}} -> {id, state: "stopped"}
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus

HELP = "stop a child (it stays stopped until started)"
ENDPOINT = "factoryd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="child id")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "stop", {"id": args.id}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    out.write(f"{result['id']}: stopped\n")
    return ExitStatus.SUCCESS
