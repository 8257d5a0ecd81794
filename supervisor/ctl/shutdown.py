"""Stop factoryd: every child in reverse start order, then the daemon exits 0.

Same path as SIGTERM. With --wait, returns once the daemon's control socket is gone
(bounded by --timeout).

CLI:  factoryctl shutdown [--wait]
Wire: {"command": "shutdown", "args": {}} -> {stopping: true, pid}
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from ipc import control, paths
from supervisor.ctl.exit_status import ExitStatus

if TYPE_CHECKING:
    from supervisor.ctl.cli import CtlContext

HELP = "stop all children in reverse order and exit the daemon"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="return once the daemon is gone")


def run(ctx: CtlContext, args: argparse.Namespace) -> ExitStatus:
    sock = paths.control_socket(ctx.runtime_dir)
    result = control.call(sock, "shutdown", {}, timeout=ctx.timeout_s)
    ctx.out.write(f"factoryd (pid {result['pid']}) is stopping\n")
    if not args.wait:
        return ExitStatus.SUCCESS
    deadline = time.monotonic() + ctx.timeout_s
    pause = 0.01
    while sock.exists():
        if time.monotonic() >= deadline:
            ctx.err.write(f"factoryctl: factoryd still running after {ctx.timeout_s}s\n")
            return ExitStatus.TIMEOUT
        time.sleep(pause)  # waiting on another process's exit, bounded by the deadline
        pause = min(pause * 2, 0.2)
    ctx.out.write("factoryd stopped\n")
    return ExitStatus.SUCCESS
