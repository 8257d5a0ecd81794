"""Permission requests waiting for review are bounded: past max_pending_permissions an
agent's request is refused at once, with a reason naming the limit, instead of holding
another coroutine for up to permission_timeout_s. The scripted agent (a TEST DOUBLE,
tests/doubles/acp_agent.py) sends five requests without waiting for answers."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from procs.agent.permissions import Decision
from procs.agent.roles import RolePolicy
from procs.agent.session import AcpAgent
from tests.harness import ROOT

AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


async def _until(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Wait on `condition()` inside the event loop, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"no {what} within {timeout}s"
        await asyncio.sleep(0.005)  # yield to the loop serving the agent; bounded above


@pytest.mark.integration  # the agent double as a process
def test_requests_past_the_cap_are_refused_at_once_naming_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("a = 1\n")

    async def main() -> tuple[list[Any], list[str], list[Any]]:
        gate = asyncio.Event()
        reviewed: list[str] = []

        async def review(call: dict[str, Any], decision: Decision) -> Decision:
            reviewed.append(call["toolCallId"])
            await gate.wait()
            return decision

        agent = await AcpAgent.start(
            AGENT, workspace=ws, policy=RolePolicy.for_role("implementer"), env=ENV,
            timeout=30, review=review, max_pending_permissions=2,
        )  # fmt: skip
        try:
            await agent.new_session(timeout=10)
            ops = [{"op": "ask_many", "count": 5, "path": str(ws / "src" / "app.py")}]
            turn = asyncio.ensure_future(agent.prompt(json.dumps(ops), timeout=30))
            record = lambda: agent.client.record.permissions  # noqa: E731
            await _until(lambda: len(record()) == 3, "three refusals")
            assert agent.client.pending_permissions == 2  # the two in review still wait
            gate.set()
            result = await turn
        finally:
            await agent.close()
        answers = json.loads(result.record.message_chunks[0])["answers"]
        return answers, reviewed, result.record.permissions

    answers, reviewed, permissions = asyncio.run(main())
    chosen = sorted(a["outcome"]["optionId"] for a in answers)
    assert chosen == ["allow", "allow", "reject", "reject", "reject"]
    assert len(reviewed) == 2
    refused = [p for p in permissions if p.outcome == "refused"]
    assert len(refused) == 3
    assert all("max_pending_permissions=2" in p.reason for p in refused)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_a_bad_cap_is_named_before_anything_is_spawned(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="max_pending_permissions must be an integer >= 1"):
        asyncio.run(
            AcpAgent.start(
                ["/nonexistent/agent"],
                workspace=tmp_path,
                policy=RolePolicy.for_role("reviewer"),
                max_pending_permissions=bad,
            )
        )
