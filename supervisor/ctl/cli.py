"""factoryctl entry point: parse, send one request per command, render the reply.

Each command is a module listed in `commands.COMMANDS`. A module provides:

    HELP: str
    ENDPOINT: str = "factoryd"        # control socket name in the runtime dir
    add_arguments(parser) -> None
    request(args) -> tuple[str, dict]  # (wire command, wire args)
    render(result, args, out) -> ExitStatus

or, for commands that are not one request/one reply (following a stream, reading a
database), `run(ctx, args) -> ExitStatus` instead of request/render.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ipc import control, paths
from supervisor.ctl.commands import COMMANDS
from supervisor.ctl.exit_status import ExitStatus


@dataclass(frozen=True)
class CtlContext:
    runtime_dir: Path
    state_dir: Path
    timeout_s: float
    json: bool
    out: TextIO
    err: TextIO


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factoryctl", description="Operate a factoryd daemon.")
    parser.add_argument("--runtime-dir", help="factoryd's runtime dir (sockets)")
    parser.add_argument("--state-dir", help="factoryd's state dir (databases)")
    parser.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait for an answer (60)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--runtime-dir", help=argparse.SUPPRESS, dest="sub_runtime_dir")
        module.add_arguments(p)
    return parser


def _seconds(text: str) -> float:
    """A usable wait: a finite number of seconds > 0 (nan and inf break settimeout)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0: {text!r}")
    return value


def main(
    argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one factoryctl command; returns its ExitStatus.

    A reader that goes away (`factoryctl status | head -1`) ends the command quietly
    with 141 (128 + SIGPIPE, what a shell reports for a command its pipe killed), as a
    C tool killed by SIGPIPE would: no traceback, nothing more written.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        code = _run(argv, out, err)
        out.flush()  # inside the try: a closed pipe fails here, not at interpreter exit
    except BrokenPipeError:
        _silence(out)
        return ExitStatus.READER_GONE
    return code


def _silence(out: TextIO) -> None:
    """Point `out` at /dev/null, so nothing buffered fails again when Python exits."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # not a file (a StringIO in tests): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _run(argv: list[str] | None, out: TextIO, err: TextIO) -> int:
    args = build_parser().parse_args(argv)
    runtime = paths.runtime_dir(getattr(args, "sub_runtime_dir", None) or args.runtime_dir)
    ctx = CtlContext(
        runtime_dir=runtime,
        state_dir=paths.state_dir(args.state_dir),
        timeout_s=args.timeout,
        json=bool(getattr(args, "json", False)),
        out=out,
        err=err,
    )
    module = COMMANDS[args.command]
    try:
        if hasattr(module, "run"):
            return int(module.run(ctx, args))
        endpoint = getattr(module, "ENDPOINT", "factoryd")
        wire_command, wire_args = module.request(args)
        result = control.call(
            paths.control_socket(runtime, endpoint),
            wire_command,
            wire_args,
            timeout=ctx.timeout_s,
        )
        return int(module.render(result, args, out))
    except control.DaemonNotRunning:
        what = "factoryd" if endpoint_of(module) == "factoryd" else endpoint_of(module)
        print(
            f"factoryctl: {what} is not running (no control socket at "
            f"{paths.control_socket(runtime, endpoint_of(module))})",
            file=err,
        )
        return ExitStatus.NOT_RUNNING
    except control.ControlBusy as exc:
        print(f"factoryctl: {exc} (waited {ctx.timeout_s}s; --timeout waits longer)", file=err)
        return ExitStatus.TIMEOUT
    except control.ControlTimeout as exc:
        print(f"factoryctl: no answer within {ctx.timeout_s}s ({exc})", file=err)
        return ExitStatus.TIMEOUT
    except control.RemoteError as exc:
        print(f"factoryctl: {exc}", file=err)
        return exit_status_of(exc)
    except control.ControlError as exc:
        print(f"factoryctl: {exc}", file=err)
        return ExitStatus.ERROR


_REMOTE_ERRORS = {
    "not_found": ExitStatus.NOT_FOUND,  # no such child / object
    "unknown_command": ExitStatus.USAGE,  # the service does not know the command
    "bad_request": ExitStatus.USAGE,  # it knows it, but not those arguments
}


def exit_status_of(error: control.RemoteError) -> ExitStatus:
    """The exit status for a service's error reply: the uniform error types of every
    service (ipc.control) map to their own status, any other refusal is ERROR."""
    return _REMOTE_ERRORS.get(error.type, ExitStatus.ERROR)


def endpoint_of(module: object) -> str:
    return str(getattr(module, "ENDPOINT", "factoryd"))


if __name__ == "__main__":
    sys.exit(main())
