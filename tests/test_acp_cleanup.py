"""Every way out of an agent or a terminal ends its process and its group, reaps it, and
closes its pipes and its asyncio transport.

A process's leftover child (an agent's worker, a command's `sleep &`) holds the pipes open
after the process died: the exit went unseen, or the transport was only closed by the
garbage collector, with a ResourceWarning ("unclosed transport"), or after the event loop
had closed, with "Event loop is closed". Each test runs one path in its own event loop,
with every process spawned through procs.agent.exits recorded (and so kept from the
garbage collector: only an explicit close closes anything). As the path's close returns,
the transport and its pipes are closed (what the close promises, checked before the loop
turns again: later, a pipe that reached EOF closes itself). After the loop: each process
reaped (no zombie of ours), its process group gone, no pipe or socket of ours left open,
no ResourceWarning or unraisable error.
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

from procs.agent import AcpAgent, AgentDied, RolePolicy, exits, session, terminals
from procs.agent.exits import WatchedProcess
from procs.agent.terminals import Terminals
from tests.helpers.sandbox import pids_with, sandbox_mode, skip_without_bwrap
from tests.waiting import wait_gone, wait_until

pytestmark = pytest.mark.integration  # real agent and command processes

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}

# Exits during initialize, leaving a child that inherited stdin/stdout/stderr (as an
# agent's language server or worker would): the pipes stay open after the agent is gone.
DIES_LEAVING_A_CHILD = (
    "import subprocess, sys\n"
    "child = subprocess.Popen(['sleep', '60'])\n"
    "print('child', child.pid, file=sys.stderr, flush=True)\n"
    "sys.exit(7)\n"
)


# -- what a path leaves behind ---------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            state, group = fields[0], int(fields[2])
            if group == pgid and state not in (b"Z", b"X"):
                found.append(int(entry))
    return found


def zombie_children() -> set[int]:
    """Our own children that exited and that nobody has reaped."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        fields = _stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None and fields[0] == b"Z" and int(fields[1]) == me:
            found.add(int(entry))
    return found


def open_pipes() -> set[tuple[int, str]]:
    """Our fds that are pipes or sockets (a subprocess's stdio), with what they name."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own fd, gone now
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(("pipe:", "socket:")):
                found.add((int(fd), target))
    return found


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


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[WatchedProcess]:
    """Every process the agent session and its terminals spawn, in order."""
    processes: list[WatchedProcess] = []
    real_spawn = exits.spawn

    async def recording_spawn(*args: object, **kwargs: object) -> WatchedProcess:
        process = await real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        processes.append(process)
        return process

    monkeypatch.setattr(session, "spawn", recording_spawn)
    monkeypatch.setattr(terminals, "spawn", recording_spawn)
    return processes


def _fd_open(pipe: asyncio.BaseTransport) -> bool:
    """Whether the fd under a pipe transport (a pipe's file or stdin's socket) is open."""
    end = pipe.get_extra_info("pipe")
    return end.fileno() != -1 if hasattr(end, "family") else not end.closed


def assert_let_go(processes: list[WatchedProcess]) -> None:
    """The transports of `processes` are closed, and so is each of their pipes' fds."""
    for process in processes:
        transport = process._transport
        pipes = [transport.get_pipe_transport(fd) for fd in (0, 1, 2)]
        still_open = [pipe for pipe in pipes if pipe is not None and _fd_open(pipe)]
        assert transport.is_closing() and not still_open, f"not let go: {transport!r}"


def run_clean(
    main: Callable[[], Awaitable[object]], spawned: list[WatchedProcess], *, count: int
) -> None:
    """Run `main` in a fresh event loop, then check that it spawned `count` processes,
    each reaped with its group, and that nothing of them stays open or leaks."""
    zombies_before = zombie_children()
    with leaks() as found:
        pipes_before = open_pipes()
        asyncio.run(main())  # type: ignore[arg-type]
        assert len(spawned) == count, [p.pid for p in spawned]
        for process in spawned:
            assert process.returncode is not None, f"pid {process.pid} was never reaped"
            wait_gone(process.pid)
            wait_until(
                lambda pgid=process.pid: not group_members(pgid),
                timeout=10, what=f"process group {process.pid} to be gone",
            )  # fmt: skip
            assert_let_go([process])
        assert open_pipes() - pipes_before == set(), "pipes or sockets left open"
        assert zombie_children() - zombies_before == set(), "zombies of ours left"
        spawned.clear()  # from here the garbage collector may take them: it finds no leak
    assert found == []


async def turn(
    ws: Path,
    ops: list[dict[str, object]],
    spawned: list[WatchedProcess],
    *,
    timeout: float = 30,
    mode: str | None = None,
) -> None:
    """One turn of the scripted agent, its terminals in sandbox `mode` (default: bwrap
    where it works); as its close returns, it let go of everything it spawned (the agent
    and the terminals' commands)."""
    policy = RolePolicy.for_role("architect", may_execute=True)
    agent = await AcpAgent.start(
        AGENT, workspace=ws, policy=policy, env=ENV, timeout=30,
        sandbox_mode=mode or sandbox_mode(),
    )  # fmt: skip
    try:
        await agent.new_session(timeout=10)
        await agent.prompt(json.dumps(ops), timeout=timeout)
    finally:
        await agent.close()
        assert_let_go(spawned)


# -- the paths -------------------------------------------------------------------------


def test_agent_dying_in_initialize_leaving_a_child(
    tmp_path: Path, spawned: list[WatchedProcess]
) -> None:
    # Its death is seen at once although its child still holds the pipes, and close()
    # takes the agent's whole group, the child with it.
    messages: list[str] = []

    async def main() -> None:
        with pytest.raises(AgentDied, match="exited with status 7 during initialize") as info:
            await AcpAgent.start(
                [sys.executable, "-c", DIES_LEAVING_A_CHILD], workspace=tmp_path,
                policy=RolePolicy.for_role("reviewer"), timeout=30,
            )  # fmt: skip
        assert_let_go(spawned)  # start() closed it before raising
        messages.append(str(info.value))

    run_clean(main, spawned, count=1)
    child = re.search(r"child (\d+)", messages[0])
    assert child, messages[0]
    wait_gone(int(child.group(1)))  # close() took the agent's whole group with it


def test_agent_dying_mid_turn_leaving_a_child(
    tmp_path: Path, spawned: list[WatchedProcess]
) -> None:
    async def main() -> None:
        with pytest.raises(AgentDied, match="exited with status 3 during session/prompt"):
            await turn(tmp_path, [{"op": "die", "leave_child": True}], spawned)

    run_clean(main, spawned, count=1)


def test_agent_dying_mid_turn_leaving_an_escaped_child(
    tmp_path: Path, spawned: list[WatchedProcess]
) -> None:
    # The child left the agent's process group: close() cannot kill it, and it holds the
    # agent's stdout and stderr. close() lets them go after its 1 s pipe grace.
    messages: list[str] = []

    async def main() -> None:
        with pytest.raises(AgentDied, match="exited with status 3") as info:
            await turn(tmp_path, [{"op": "die", "leave_child": "escaped"}], spawned)
        messages.append(str(info.value))

    try:
        run_clean(main, spawned, count=1)
    finally:
        for pid in re.findall(r"left child (\d+)", "".join(messages)):
            os.kill(int(pid), signal.SIGKILL)
            wait_gone(int(pid))
    assert "left child" in messages[0]


def test_turn_cancelled_at_its_timeout(tmp_path: Path, spawned: list[WatchedProcess]) -> None:
    ops = [{"op": "wait_cancel"}]
    run_clean(lambda: turn(tmp_path, ops, spawned, timeout=0.3), spawned, count=1)


# Commands left running: in the sandbox its PID namespace ends them with bwrap; without
# it (mode "none", the operator's choice) only our kill of their group does.
MODES = ["none", "bwrap"]


@pytest.mark.parametrize("mode", MODES)
def test_terminals_left_open_at_session_end(
    tmp_path: Path, spawned: list[WatchedProcess], mode: str
) -> None:
    if mode == "bwrap":
        skip_without_bwrap()
    ops = [
        {"op": "create_terminal", "command": "sh", "args": ["-c", "sleep 60 & echo $!"]},
        {"op": "wait_terminal", "index": 0},
        {"op": "create_terminal", "command": "sh", "args": ["-c", "sleep 60 & wait"]},
    ]
    run_clean(lambda: turn(tmp_path, ops, spawned, mode=mode), spawned, count=3)  # agent, commands


@pytest.mark.parametrize("mode", MODES)
def test_terminal_released_after_its_leftovers_held_the_output(
    tmp_path: Path, spawned: list[WatchedProcess], mode: str
) -> None:
    if mode == "bwrap":
        skip_without_bwrap()

    async def main() -> None:
        terminals = Terminals(tmp_path, sandbox_mode=mode)
        tid = await terminals.create("sh", ["-c", "sleep 60 & echo $!"])
        await terminals.wait_for_exit(tid, timeout=30)
        await terminals.release(tid)
        assert_let_go(spawned)
        await terminals.create("sh", ["-c", "sleep 60 & wait"])  # still running, with a child
        await terminals.close()
        assert_let_go(spawned)

    run_clean(main, spawned, count=2)


@pytest.mark.parametrize("mode", MODES)
def test_terminal_whose_output_is_held_by_an_escaped_process(
    tmp_path: Path, spawned: list[WatchedProcess], mode: str
) -> None:
    # setsid takes the child out of the command's process group: the group kill misses it
    # and it holds the output pipe. We stop waiting for output after pipe_grace_s and close
    # our end. (In the sandbox, its PID namespace takes the child when the command exits.)
    # The command exits only once the child runs, escaped: it opens the FIFO `up`.
    if mode == "bwrap":
        skip_without_bwrap()
    marker = f"marker-{uuid.uuid4().hex}"
    code = "import time; open('up', 'w').close(); time.sleep(60)"
    script = f'mkfifo up; setsid {sys.executable} -c "{code}" {marker} & cat up'

    async def main() -> None:
        terminals = Terminals(tmp_path, pipe_grace_s=0.2, sandbox_mode=mode)
        tid = await terminals.create("sh", ["-c", script])
        terminal = await terminals.wait_for_exit(tid, timeout=30)
        assert terminal.exit_status() == {"exitCode": 0, "signal": None}
        await terminals.release(tid)
        assert_let_go(spawned)

    try:
        run_clean(main, spawned, count=1)
    finally:
        for pid in pids_with(marker):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid)
