"""terminal/* backing: commands confined to the workspace, killed at their timeout as a group."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from procs.agent.roles import PathRefused
from procs.agent.terminals import TerminalNotFound, Terminals
from tests.waiting import pid_gone


def test_command_outliving_its_timeout_is_killed_with_its_group(tmp_path: Path) -> None:
    async def main() -> tuple[dict | None, bool, int]:
        terminals = Terminals(tmp_path, command_timeout_s=0.5)
        # The shell's child sleeps in the same group: the kill must take it too.
        tid = await terminals.create("sh", ["-c", "sleep 30 & echo $!; wait"])
        terminal = await terminals.wait_for_exit(tid, timeout=10)
        child = int(terminal.text().split()[0])
        await terminals.close()
        return terminal.exit_status(), terminal.timed_out, child

    status, timed_out, child = asyncio.run(main())
    assert status == {"exitCode": None, "signal": "SIGKILL"}
    assert timed_out is True
    assert pid_gone(child)


def test_cwd_must_stay_in_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)

    async def main() -> str:
        terminals = Terminals(ws)
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
