"""The one explicit list of factoryctl commands (name -> module), and what a module is.

A command is one module (as circus's commands/ has one per verb): its docstring shows
the CLI and wire forms, `HELP` is its line in `factoryctl -h`, and `add_arguments`
declares its options. Most commands are one request and one reply (`RequestCommand`):
`request(args)` gives the wire command and args, which go to the control socket
`ENDPOINT` names in the runtime dir, and `render(result, args, out)` writes the reply.
A command that is not one request and one reply (it follows a stream or reads a
database) is a `RunCommand`, whose `run(ctx, args)` does it all. mypy checks every
module in COMMANDS against one of the two.

A command module imports at its top only what parsing needs: whatever only running it
needs (the signal codec, the journal, ...) it imports when it runs, so that
`factoryctl status` does not pay for `factoryctl signals`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeAlias, runtime_checkable

from supervisor.ctl import (
    beads,
    dispatch,
    golden,
    kill,
    llm,
    logs,
    loops,
    queue,
    ramdisk,
    reload,
    restart,
    shutdown,
    signals,
    start,
    status,
    stop,
    swarm,
    top,
    workspaces,
)
from supervisor.ctl.exit_status import ExitStatus

if TYPE_CHECKING:
    from supervisor.ctl.cli import CtlContext


class RequestCommand(Protocol):
    """One request to a control socket, one reply rendered."""

    HELP: str
    ENDPOINT: str  # the control socket's name in the runtime dir: "factoryd", a service's

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def request(self, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
        """The wire command and its args."""
        ...

    def render(self, result: Any, args: argparse.Namespace, out: TextIO) -> ExitStatus:
        """Write the reply's result to `out`; returns the exit status."""
        ...


@runtime_checkable
class RunCommand(Protocol):
    """Anything else: following a stream, reading a database, waiting for an exit."""

    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, ctx: CtlContext, args: argparse.Namespace) -> ExitStatus:
        """Carry out the command, bounded by `ctx.timeout_s` or its own --for."""
        ...


CtlCommand: TypeAlias = RequestCommand | RunCommand

COMMANDS: dict[str, CtlCommand] = {
    "status": status,
    "kill": kill,
    "stop": stop,
    "start": start,
    "restart": restart,
    "logs": logs,
    "reload": reload,
    "shutdown": shutdown,
    "workspaces": workspaces,
    "ramdisk": ramdisk,
    "signals": signals,
    "llm": llm,
    "loops": loops,
    "beads": beads,
    "dispatch": dispatch,
    "queue": queue,
    "golden": golden,
    "top": top,
    "swarm": swarm,
}
