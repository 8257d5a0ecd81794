"""Show a child's last output lines (stdout and stderr, kept by factoryd), or follow them.

CLI:  factoryctl logs ID [-n 50] [-f [--for SECONDS]] [--json]
Wire: {"command": "logs", "args": {"id": ID, "lines": 50}}
        -> {id, lines: [[ts, text], ...], seq, dropped: 0}
      {"command": "logs", "args": {"id": ID, "lines": N, "after": SEQ}}
        -> the first N lines numbered above SEQ, `seq` the number of the last one
           returned, `dropped` how many above SEQ the ring (500 lines) no longer had.
Following asks every 0.25 s for what came after the last line printed; lines the
ring dropped in between are announced as "-- N lines dropped --". It ends on
Ctrl-C, after --for seconds, or when factoryd goes away (exit 3).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from ipc import control, paths
from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.follow_args import add_follow_arguments
from supervisor.ctl.render import write_json

if TYPE_CHECKING:
    from supervisor.ctl.cli import CtlContext

HELP = "show or follow a child's recent output"
FOLLOW_EVERY_S = 0.25
FOLLOW_BATCH = 500  # the ring's size: one request can take everything it holds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="child id")
    parser.add_argument("-n", "--lines", type=int, default=50, help="how many lines (50)")
    add_follow_arguments(parser, "lines", "-f")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def run(ctx: CtlContext, args: argparse.Namespace) -> ExitStatus:
    if args.lines < 0:
        ctx.err.write(f"factoryctl: -n must be >= 0, got {args.lines}\n")
        return ExitStatus.USAGE
    if not args.for_s > 0:
        ctx.err.write(f"factoryctl: --for must be > 0 seconds, got {args.for_s}\n")
        return ExitStatus.USAGE
    sock = paths.control_socket(ctx.runtime_dir)
    result = control.call(sock, "logs", {"id": args.id, "lines": args.lines}, timeout=ctx.timeout_s)
    if not args.follow:
        if args.json:
            write_json(result, ctx.out)
        else:
            _write_lines(result, False, ctx.out)
        return ExitStatus.SUCCESS
    _write_lines(result, args.json, ctx.out)
    deadline = time.monotonic() + args.for_s
    seq = result["seq"]
    try:
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(FOLLOW_EVERY_S, left))  # a follower's pace, bounded by --for
            wire = {"id": args.id, "lines": FOLLOW_BATCH, "after": seq}
            try:
                result = control.call(sock, "logs", wire, timeout=ctx.timeout_s)
            except control.DaemonNotRunning:
                ctx.err.write("factoryctl: factoryd went away\n")
                return ExitStatus.NOT_RUNNING
            _write_lines(result, args.json, ctx.out)
            seq = result["seq"]
    except KeyboardInterrupt:
        pass
    return ExitStatus.SUCCESS


def _write_lines(result: dict[str, Any], as_json: bool, out: TextIO) -> None:
    child_id = result["id"]
    if result.get("dropped"):
        if as_json:
            out.write(orjson.dumps({"id": child_id, "dropped": result["dropped"]}).decode() + "\n")
        else:
            out.write(f"-- {result['dropped']} lines dropped --\n")
    for ts, text in result["lines"]:
        if as_json:
            out.write(orjson.dumps({"id": child_id, "ts": ts, "text": text}).decode() + "\n")
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(ts))
            out.write(f"{stamp} {text}\n")
    out.flush()
