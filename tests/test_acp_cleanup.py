"""Every way out of an agent or a terminal closes its pipes and its asyncio transport.

A process's leftover child (an agent's worker, a command's `sleep &`) holds the pipes open
after the process died; the transport was then only closed by the garbage collector, with
a ResourceWarning ("unclosed transport"), or after the event loop had closed, with
"Event loop is closed". Each test runs one path in its own event loop, collects garbage,
and expects neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import signal
import sys
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from procs.agent import AcpAgent, AgentDied, RolePolicy
from procs.agent.terminals import Terminals
from tests.helpers.sandbox import pids_with, sandbox_mode
from tests.waiting import wait_gone

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}

# Exits during initialize, leaving a child that inherited stdin/stdout/stderr.
DIES_LEAVING_A_CHILD = (
    "import subprocess, sys; subprocess.Popen(['sleep', '60']); sys.exit(7)"
)  # fmt: skip


@contextlib.contextmanager
def leaks() -> Iterator[list[str]]:
    """Collects the ResourceWarnings and unraisable errors (from __del__) of the block,
    including those the garbage collector finds right after it."""
    gc.collect()  # what earlier tests left is not this block's
    found: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: found.append(f"{u.exc_type.__name__}: {u.exc_value}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            yield found
            gc.collect()
        found.extend(str(w.message) for w in caught if issubclass(w.category, ResourceWarning))
    finally:
        sys.unraisablehook = previous


def run_clean(main: Callable[[], Awaitable[object]]) -> None:
    with leaks() as found:
        asyncio.run(main())  # type: ignore[arg-type]
    assert found == []


async def turn(ws: Path, ops: list[dict[str, object]], *, timeout: float = 30) -> None:
    policy = RolePolicy.for_role("architect", may_execute=True)
    agent = await AcpAgent.start(
        AGENT, workspace=ws, policy=policy, env=ENV, timeout=30, sandbox_mode=sandbox_mode()
    )
    try:
        await agent.new_session(timeout=10)
        await agent.prompt(json.dumps(ops), timeout=timeout)
    finally:
        await agent.close()


def test_agent_dying_in_initialize_leaving_a_child(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(AgentDied, match="exited with status 7 during initialize"):
            await AcpAgent.start(
                [sys.executable, "-c", DIES_LEAVING_A_CHILD], workspace=tmp_path,
                policy=RolePolicy.for_role("reviewer"), timeout=30,
            )  # fmt: skip

    run_clean(main)


def test_agent_dying_mid_turn_leaving_a_child(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(AgentDied, match="exited with status 3 during session/prompt"):
            await turn(tmp_path, [{"op": "die", "leave_child": True}])

    run_clean(main)


def test_agent_dying_mid_turn_leaving_an_escaped_child(tmp_path: Path) -> None:
    # The child left the agent's process group: close() cannot kill it, and it holds the
    # agent's stdout and stderr. close() lets them go after its 1 s pipe grace.
    messages: list[str] = []

    async def main() -> None:
        with pytest.raises(AgentDied, match="exited with status 3") as info:
            await turn(tmp_path, [{"op": "die", "leave_child": "escaped"}])
        messages.append(str(info.value))

    try:
        run_clean(main)
    finally:
        for pid in re.findall(r"left child (\d+)", "".join(messages)):
            os.kill(int(pid), signal.SIGKILL)
            wait_gone(int(pid))
    assert "left child" in messages[0]


def test_turn_cancelled_at_its_timeout(tmp_path: Path) -> None:
    run_clean(lambda: turn(tmp_path, [{"op": "wait_cancel"}], timeout=0.3))


def test_terminals_left_open_at_session_end(tmp_path: Path) -> None:
    ops = [
        {"op": "create_terminal", "command": "sh", "args": ["-c", "sleep 60 & echo $!"]},
        {"op": "wait_terminal", "index": 0},
        {"op": "create_terminal", "command": "sleep", "args": ["60"]},
    ]
    run_clean(lambda: turn(tmp_path, ops))


def test_terminal_released_after_its_leftovers_held_the_output(tmp_path: Path) -> None:
    async def main() -> None:
        terminals = Terminals(tmp_path, sandbox_mode=sandbox_mode())
        tid = await terminals.create("sh", ["-c", "sleep 60 & echo $!"])
        await terminals.wait_for_exit(tid, timeout=30)
        await terminals.release(tid)
        await terminals.create("sleep", ["60"])
        await terminals.close()

    run_clean(main)


def test_terminal_whose_output_is_held_by_an_escaped_process(tmp_path: Path) -> None:
    # setsid takes the child out of the command's process group: the group kill misses it
    # and it holds the output pipe. We stop waiting for output after pipe_grace_s. (In the
    # sandbox, its PID namespace takes the child when the command exits.)
    marker = f"marker-{uuid.uuid4().hex}"
    sleeper = f"setsid {sys.executable} -c 'import time; time.sleep(60)' {marker}"

    async def main() -> None:
        terminals = Terminals(tmp_path, pipe_grace_s=0.2, sandbox_mode=sandbox_mode())
        tid = await terminals.create("sh", ["-c", f"{sleeper} &"])
        terminal = await terminals.wait_for_exit(tid, timeout=30)
        assert terminal.exit_status() == {"exitCode": 0, "signal": None}
        await terminals.release(tid)

    try:
        run_clean(main)
    finally:
        for pid in pids_with(marker):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid)
