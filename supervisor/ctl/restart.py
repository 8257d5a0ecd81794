"""Restart a child: stop it as `stop` does, then start it again. Siblings are left
alone and the restart does not count against the supervisor's intensity.

CLI:  factoryctl restart ID
Wire: {"command": "restart", "args": {"id": ID}} -> {id, pid, state}
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus

HELP = "stop a child and start it again"
ENDPOINT = "factoryd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="child id")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "restart", {"id": args.id}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    pid = result.get("pid")
    out.write(f"{result['id']}: restarted" + (f" (pid {pid})\n" if pid else "\n"))
    return ExitStatus.SUCCESS
