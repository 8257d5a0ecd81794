"""Adversarial review of the agent process: death while its own child holds the pipes."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from procs.agent import AcpAgent, AgentDied, RolePolicy
from tests.waiting import wait_gone

# Exits at once, leaving a child that inherited stdin/stdout/stderr (as an agent's
# language server or worker would): the pipes stay open after the agent is gone.
DIES_LEAVING_A_CHILD = """
import subprocess, sys
child = subprocess.Popen(["sleep", "60"])
print("child", child.pid, file=sys.stderr, flush=True)
sys.exit(7)
"""


def test_agent_death_is_seen_while_its_child_still_holds_the_pipes(tmp_path: Path) -> None:
    async def main() -> str:
        with pytest.raises(AgentDied) as info:
            await AcpAgent.start(
                [sys.executable, "-c", DIES_LEAVING_A_CHILD],
                workspace=tmp_path,
                policy=RolePolicy.for_role("reviewer"),
                timeout=30.0,
            )
        return str(info.value)

    message = asyncio.run(main())
    assert "exited with status 7 during initialize" in message
    match = re.search(r"child (\d+)", message)
    assert match, message
    wait_gone(int(match.group(1)))  # close() took the agent's whole group with it
