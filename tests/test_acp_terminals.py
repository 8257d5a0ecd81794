"""terminal/* backing: commands confined to the workspace (or the workspace itself), killed
at their timeout as a group, run in the sandbox with the role's locked paths read-only,
refused where it cannot run; an exited command's leftovers do not stall it, and an unusual
exit signal is reported by name."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from procs.agent import AcpAgent, RolePolicy
from procs.agent.roles import PathRefused
from procs.agent.terminals import Terminal, TerminalNotFound, Terminals
from tests.helpers.sandbox import pids_with, sandbox_mode, skip_without_bwrap
from tests.waiting import wait_until

pytestmark = pytest.mark.integration  # real agent and command processes

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def terminal_turn(ws: Path, script: str, *, sandbox_mode: str = "bwrap") -> dict[str, Any]:
    """One terminal/create of `sh -c script` by an implementer, through the real wire."""

    async def main() -> dict[str, Any]:
        policy = RolePolicy.for_role("implementer", may_execute=True)
        agent = await AcpAgent.start(
            AGENT, workspace=ws, policy=policy, env=ENV, timeout=30, sandbox_mode=sandbox_mode
        )
        try:
            await agent.new_session(timeout=10)
            op = {"op": "terminal", "command": "sh", "args": ["-c", script]}
            result = await agent.prompt(json.dumps([op]), timeout=30)
        finally:
            await agent.close()
        return json.loads(result.record.message_chunks[0])

    return asyncio.run(main())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "tests").mkdir()
    (ws / "src" / "app.py").write_text("a = 1\n")
    (ws / "tests" / "test_app.py").write_text("def test_a(): pass\n")
    (ws / "pyproject.toml").write_text("[project]\n")
    return ws


def test_an_implementers_command_writes_code_but_not_tests_or_harness(project: Path) -> None:
    skip_without_bwrap()
    script = (
        "echo 'a = 2' > src/app.py; echo gone > tests/test_app.py; "
        "echo new > tests/test_new.py; echo x >> pyproject.toml; echo done"
    )
    reply = terminal_turn(project, script)
    assert reply["exit"] == {"exitCode": 0}
    output = reply["output"]["output"]
    assert output.count("Read-only file system") == 3, output
    assert (project / "src" / "app.py").read_text() == "a = 2\n"
    assert (project / "tests" / "test_app.py").read_text() == "def test_a(): pass\n"
    assert not (project / "tests" / "test_new.py").exists()
    assert (project / "pyproject.toml").read_text() == "[project]\n"


def test_without_bwrap_terminals_are_refused_unless_sandbox_none(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "bin"  # the commands the test runs, and no bwrap
    tools.mkdir()
    for name in ("prlimit", "sh"):
        (tools / name).symlink_to(shutil.which(name) or name)
    monkeypatch.setenv("PATH", str(tools))
    refused = terminal_turn(project, "echo ran > src/ran.txt")
    assert refused["error"]["code"] == -32003
    assert "terminal refused: bwrap" in refused["error"]["message"]
    assert "not on PATH" in refused["error"]["message"]
    assert not (project / "src" / "ran.txt").exists()
    allowed = terminal_turn(project, "echo ran > src/ran.txt", sandbox_mode="none")
    assert allowed["exit"] == {"exitCode": 0}
    assert (project / "src" / "ran.txt").read_text() == "ran\n"


class SteppedClock(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves on: a timer fires when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0

    def time(self) -> float:
        return super().time() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


async def output_shows(terminal: Terminal, text: str, *, timeout: float = 30) -> None:
    """Wait (polling, bounded by `timeout` s of real time) until the command printed `text`."""
    deadline = time.monotonic() + timeout
    while text not in terminal.text():
        assert time.monotonic() < deadline, f"no {text!r} in {terminal.text()!r}"
        await asyncio.sleep(0.01)  # polls a condition; the deadline bounds it


@pytest.mark.parametrize("mode", ["none", "bwrap"])
def test_command_outliving_its_timeout_is_killed_with_its_group(tmp_path: Path, mode: str) -> None:
    # The shell's child sleeps in the same group: the kill must take it too (in the sandbox
    # its PID namespace would end it anyway; mode "none" has only the group kill). The
    # clock moves past the command's timeout only once that child runs (it said so).
    if mode == "bwrap":
        skip_without_bwrap()
    marker = f"marker-{uuid.uuid4().hex}"
    code = "import time; print('asleep', flush=True); time.sleep(60)"
    sleeper = f'{sys.executable} -c "{code}" {marker}'

    async def main() -> tuple[dict | None, bool]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, SteppedClock)
        terminals = Terminals(tmp_path, command_timeout_s=60, sandbox_mode=mode)
        tid = await terminals.create("sh", ["-c", f"{sleeper} & wait"])
        await output_shows(terminals.get(tid), "asleep")
        loop.advance(60)  # the timeout is due: the watchdog kills the group
        terminal = await terminals.wait_for_exit(tid, timeout=30)
        await terminals.close()
        return terminal.exit_status(), terminal.timed_out

    with asyncio.Runner(loop_factory=SteppedClock) as runner:
        status, timed_out = runner.run(main())
    assert status == {"exitCode": None, "signal": "SIGKILL"}
    assert timed_out is True
    wait_until(lambda: not pids_with(marker), timeout=10, what="the shell's child to be killed")


def test_cwd_must_stay_in_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)

    async def main() -> str:
        terminals = Terminals(ws, sandbox_mode=sandbox_mode())
        with pytest.raises(PathRefused, match="outside the workspace"):
            await terminals.create("pwd", cwd=str(tmp_path))
        with pytest.raises(PathRefused, match=r"contains '\.\.'"):
            await terminals.create("pwd", cwd="sub/..")
        tid = await terminals.create("pwd", cwd="sub")
        terminal = await terminals.wait_for_exit(tid, timeout=10)
        await terminals.release(tid)
        with pytest.raises(TerminalNotFound):
            terminals.get(tid)
        return terminal.text()

    assert asyncio.run(main()) == f"{(ws / 'sub').resolve()}\n"


def test_cwd_may_be_the_workspace_itself(tmp_path: Path) -> None:
    # ACP agents pass the session's cwd (the workspace's absolute path) as terminal cwd.
    async def main() -> list[str]:
        terminals = Terminals(tmp_path, sandbox_mode=sandbox_mode())
        texts = []
        for cwd in (str(tmp_path), ".", f"{tmp_path}/"):
            tid = await terminals.create("pwd", cwd=cwd)
            texts.append((await terminals.wait_for_exit(tid, timeout=30.0)).text())
        await terminals.close()
        return texts

    assert asyncio.run(main()) == [f"{tmp_path.resolve()}\n"] * 3


def test_background_child_holding_the_output_does_not_stall_wait_for_exit(tmp_path: Path) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)' {marker}"

    async def main() -> tuple[dict | None, str]:
        terminals = Terminals(tmp_path, command_timeout_s=60.0, sandbox_mode=sandbox_mode())
        # The shell exits at once; its background child keeps the output pipe open.
        tid = await terminals.create("sh", ["-c", f"{sleeper} & echo started"])
        terminal = await terminals.wait_for_exit(tid, timeout=30.0)
        status, text = terminal.exit_status(), terminal.text()
        await terminals.close()
        return status, text

    status, text = asyncio.run(main())
    assert status == {"exitCode": 0, "signal": None}
    assert text == "started\n"
    wait_until(lambda: not pids_with(marker), timeout=10.0, what="the leftover to be killed")


def test_a_command_killed_by_a_realtime_signal_reports_it(tmp_path: Path) -> None:
    async def main() -> dict | None:
        terminals = Terminals(tmp_path, sandbox_mode=sandbox_mode())
        tid = await terminals.create("sh", ["-c", "kill -s 40 $$"])
        terminal = await terminals.wait_for_exit(tid, timeout=30.0)
        await terminals.close()
        return terminal.exit_status()

    assert asyncio.run(main()) == {"exitCode": None, "signal": "SIGRTMIN+6"}
