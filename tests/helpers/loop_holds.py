"""Holding a supervised loop in a chosen phase, so a test can SIGKILL it there.

A hold is a FIFO named for a hold point in a holds directory. The loop side takes it
(renames it to NAME.held, so only one process ever takes it: a restarted loop goes
through), opens it, writes the NAME.waiting marker and waits for a byte: it stays in its
phase until the test releases it or kills it. Hold points:

- `auditor`, `implementer`, `architect`, `reviewer`: the start of that role's turn, in
  HeldTurns (TEST DOUBLE: an in-process scripted AgentTurns, `--agent-turns
  tests.helpers.loop_holds:held_turns`, holds dir in $FACTORY_TEST_HOLDS). It is honest:
  one test for calc.mul, its implementation, a docstring as the refactor, an approval.
- `suite`: the start of a test run. This file run as a script is the test command's
  wrapper: `python loop_holds.py HOLDS -- python -m pytest -q ...` takes the `suite`
  hold if one is armed, then execs the rest (stdlib only: it runs as a script), with
  PYTEST_DISABLE_PLUGIN_AUTOLOAD=1.

The test side: `arm`, `wait_held` (the marker is written once the FIFO is open, so the
loop is in its wait or about to be), `release` (renamed away first, so a hold armed
again under the same name is a new one).
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path
from typing import Any

ENV = "FACTORY_TEST_HOLDS"


def hold(holds: Path, name: str) -> None:
    """Take hold `name` if it is armed and wait until it is released; else return."""
    try:
        os.rename(holds / name, holds / f"{name}.held")
    except FileNotFoundError:
        return
    fd = os.open(holds / f"{name}.held", os.O_RDONLY | os.O_NONBLOCK)
    try:
        (holds / f"{name}.waiting").write_text(str(os.getpid()))
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll()  # until a writer sends the release byte (or the test kills us)
    finally:
        os.close(fd)


def arm(holds: Path, name: str) -> None:
    os.mkfifo(holds / name, 0o600)


def is_held(holds: Path, name: str) -> bool:
    return (holds / f"{name}.waiting").exists()


def release(holds: Path, name: str) -> None:
    released = holds / f"{name}.released"
    os.replace(holds / f"{name}.held", released)
    (holds / f"{name}.waiting").unlink()
    fd = os.open(released, os.O_WRONLY | os.O_NONBLOCK)  # the holder has it open
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
    released.unlink()


class HeldTurns:
    """TEST DOUBLE: AgentTurns for calc.mul, each turn first passing its role's hold."""

    TEST = "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n"
    CODE = "def mul(a, b):\n    return a * b\n"
    DOCSTRING = '"""Arithmetic."""\n'

    def __init__(self, holds: Path) -> None:
        self.holds = holds

    def auditor(self, turn: Any) -> Any:
        hold(self.holds, "auditor")
        test = turn.workspace / "tests" / "test_mul.py"
        if test.exists():
            return _reply('{"status": "requirements_complete"}')
        test.write_text(self.TEST)
        return _reply('{"status": "test_written", "test": "test_mul"}')

    def implementer(self, turn: Any) -> Any:
        hold(self.holds, "implementer")
        calc = turn.workspace / "calc.py"
        calc.write_text(calc.read_text().rstrip("\n") + "\n\n\n" + self.CODE)
        return _reply('{"status": "implemented", "summary": "mul"}')

    def architect(self, turn: Any) -> Any:
        hold(self.holds, "architect")
        calc = turn.workspace / "calc.py"
        calc.write_text(self.DOCSTRING + calc.read_text())
        return _reply('{"status": "refactored", "summary": "a module docstring"}')

    def reviewer(self, turn: Any) -> Any:
        hold(self.holds, "reviewer")
        return _reply('{"status": "approve", "issues": []}')


def _reply(result: str) -> Any:
    from procs.loop.turns import TurnReply  # the script side is stdlib only

    return TurnReply(f"Done.\nFACTORY_RESULT {result}")


def held_turns(config: Any, ledger: Any) -> HeldTurns:
    """The loop service's --agent-turns factory."""
    return HeldTurns(Path(os.environ[ENV]))


if __name__ == "__main__":  # the test command wrapper: HOLDS -- COMMAND...
    holds_dir, separator, *command = sys.argv[1:]
    assert separator == "--" and command, "usage: loop_holds.py HOLDS -- COMMAND..."
    hold(Path(holds_dir), "suite")
    # The scratch projects use no pytest plugin; loading this environment's (hypothesis
    # and the like) would cost about a second a run.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    os.execvp(command[0], command)
