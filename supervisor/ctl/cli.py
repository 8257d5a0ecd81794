"""factoryctl entry point: parse, send one request per command, render the reply.

Each command is a module listed in `commands.COMMANDS`, a `RequestCommand` (HELP,
ENDPOINT, add_arguments, request, render) or a `RunCommand` (HELP, add_arguments,
run) as commands.py states them.

Start-up is most of a command's time, so only the chosen command's parser is built
(`parse_command_line`); `factoryctl -h` builds them all (`build_parser`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ipc import control, paths
from supervisor.ctl.commands import COMMANDS, CtlCommand, RunCommand
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
    """The whole command line, every command's options included (for `factoryctl -h`)."""
    parser = argparse.ArgumentParser(prog="factoryctl", description=_DESCRIPTION)
    _add_global_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, **_command_parser_kwargs(module))
        _add_command_arguments(p, module)
    return parser


def parse_command_line(argv: list[str] | None) -> argparse.Namespace:
    """Parse as `build_parser()` does, building only the chosen command's parser.

    argparse looks up its messages' translations for every parser it builds (~0.2 ms
    each, 18 in all): the global options and the command's name are parsed first, then
    the rest by that command's parser alone. `-h` before the command shows them all.
    """
    top = argparse.ArgumentParser(prog="factoryctl", description=_DESCRIPTION, add_help=False)
    top.add_argument(
        "-h", "--help", action=_FullHelp, nargs=0, default=argparse.SUPPRESS, help="show the help"
    )
    _add_global_arguments(top)
    top.add_argument("command", choices=COMMANDS, metavar="COMMAND")
    rest = top.add_argument("command_args", nargs=argparse.REMAINDER)
    rest.required = False  # argparse requires it; what is missing is the command
    args = top.parse_args(argv)
    module = COMMANDS[args.command]
    parser = argparse.ArgumentParser(
        prog=f"factoryctl {args.command}", **_command_parser_kwargs(module)
    )
    _add_command_arguments(parser, module)
    command_args = args.command_args
    del args.command_args
    return parser.parse_args(command_args, namespace=args)


_DESCRIPTION = "Operate a factoryd daemon."


def _add_global_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime-dir", help="factoryd's runtime dir (sockets)")
    parser.add_argument("--state-dir", help="factoryd's state dir (databases)")
    parser.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait for an answer (60)"
    )


def _command_parser_kwargs(module: CtlCommand) -> dict[str, Any]:
    """A command's help page: its module docstring, with the CLI and wire forms as written."""
    return {"description": module.__doc__, "formatter_class": argparse.RawDescriptionHelpFormatter}


def _add_command_arguments(parser: argparse.ArgumentParser, module: CtlCommand) -> None:
    parser.add_argument("--runtime-dir", help=argparse.SUPPRESS, dest="sub_runtime_dir")
    module.add_arguments(parser)


class _FullHelp(argparse.Action):
    """`factoryctl -h`: the help of the full parser, which lists every command."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        build_parser().print_help()
        parser.exit()


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
    args = parse_command_line(argv)
    runtime = paths.runtime_dir(getattr(args, "sub_runtime_dir", None) or args.runtime_dir)
    module = COMMANDS[args.command]
    ctx = CtlContext(
        runtime_dir=runtime,
        state_dir=_state_dir(args.state_dir, runtime, getattr(module, "READS_STATE_DIR", False)),
        timeout_s=args.timeout,
        json=bool(getattr(args, "json", False)),
        out=out,
        err=err,
    )
    try:
        if isinstance(module, RunCommand):
            return int(module.run(ctx, args))
        wire_command, wire_args = module.request(args)
        result = control.call(
            paths.control_socket(runtime, module.ENDPOINT),
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


# A status call to a live factoryd answers in milliseconds; a hung one must not hold a
# command that would otherwise read the default state dir.
_STATE_DIR_ASK_S = 2.0


def _state_dir(explicit: str | None, runtime: Path, reads_state: bool) -> Path:
    """The databases' dir: --state-dir, else $FACTORY_STATE_DIR, else (for a command that
    reads them) the one the running factoryd says it uses, so that `factoryctl loops`
    needs no --state-dir for a daemon started with one; else the default."""
    if explicit or os.environ.get("FACTORY_STATE_DIR") or not reads_state:
        return paths.state_dir(explicit)
    try:
        status = control.call(paths.control_socket(runtime), "status", {}, timeout=_STATE_DIR_ASK_S)
        return Path(status["daemon"]["state_dir"])
    except (control.ControlError, KeyError, TypeError):
        return paths.state_dir()


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
