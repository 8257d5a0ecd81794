"""Adversarial review of terminal/*: leftovers of an exited command, unusual exit signals."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from procs.agent.terminals import Terminals
from tests.helpers.sandbox import pids_with, sandbox_mode
from tests.waiting import wait_until


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
