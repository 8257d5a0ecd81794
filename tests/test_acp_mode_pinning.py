"""Mode pinning (procs/agent/modes.py): every turn runs in a session mode that asks before
each edit and command. Pure cases for ModePin, then the scripted ACP TEST DOUBLE
(tests/doubles/acp_agent.py, its modes from $FACTORY_DOUBLE_MODES): a session that starts
in an auto-approve mode is set to the asking one (session/set_mode), an agent with no
asking mode fails the turn, and a switch to an auto-approve mode mid-turn ends the turn
with UnsafeMode, refusing what it asks afterwards."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from acp.schema import PermissionOption, ToolCallLocation, ToolCallUpdate

from procs.agent import AcpAgent, RolePolicy, UnsafeMode
from procs.agent.modes import ModePin, NoAskingMode
from procs.agent.profiles import AgentProfile
from tests.harness import ROOT

AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
CLAUDE_LIKE = {
    "currentModeId": "auto",
    "availableModes": [{"id": m, "name": m} for m in ("default", "acceptEdits", "plan", "auto")],
}
PIN = ModePin(("default",), required=True)


def test_the_asking_mode_is_chosen_and_set_only_when_not_current() -> None:
    assert PIN.pin(CLAUDE_LIKE) == ("default", True)
    assert PIN.pin({**CLAUDE_LIKE, "currentModeId": "default"}) == ("default", False)
    codex = ModePin(("read-only",), required=True)
    offered = [{"id": "read-only", "name": "r"}, {"id": "auto", "name": "a"}]
    assert codex.pin({"currentModeId": "auto", "availableModes": offered}) == ("read-only", True)


def test_no_asking_mode_is_an_error_unless_the_agent_has_no_modes_at_all() -> None:
    with pytest.raises(NoAskingMode, match="none asks"):
        PIN.pin({"currentModeId": "yolo", "availableModes": [{"id": "yolo", "name": "y"}]})
    with pytest.raises(NoAskingMode, match="reports no session modes"):
        PIN.pin(None)
    assert ModePin(("build",)).pin(None) == (None, False)  # opencode: its config asks


def test_leaving_the_pin_is_named() -> None:
    assert PIN.leaves_pin({"currentModeId": "default"}, "default") is None
    why = PIN.leaves_pin({"currentModeId": "acceptEdits"}, "default")
    assert why is not None and "'acceptEdits' mid-turn" in why


def profile(**kw: Any) -> AgentProfile:
    return AgentProfile(name="double", command=tuple(AGENT), model_api="openai", **kw)


async def started(ws: Path, modes: dict[str, Any] | None, **kw: Any) -> AcpAgent:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
           "FACTORY_DOUBLE_MODES": json.dumps(modes)}  # fmt: skip
    return await AcpAgent.start(AGENT, workspace=ws, env=env, timeout=30, sandbox_mode="none",
                                policy=RolePolicy.for_role("implementer"), **kw)  # fmt: skip


@pytest.mark.integration  # the agent double as a process
def test_a_session_in_an_auto_mode_is_pinned_and_a_switch_mid_turn_ends_the_turn(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    target = str(ws / "src.py")

    async def main() -> tuple[Any, ...]:
        agent = await started(ws, CLAUDE_LIKE, profile=profile(ask_modes=("default",),
                                                                 require_mode=True))  # fmt: skip
        try:
            await agent.new_session()
            pinned = await agent.prompt(json.dumps([{"op": "mode"}]), timeout=30)
            await agent.new_session()
            ops = [{"op": "mode_update", "mode": "acceptEdits"}, {"op": "wait_cancel"}]
            with pytest.raises(UnsafeMode, match="'acceptEdits' mid-turn"):
                await agent.prompt(json.dumps(ops), timeout=30)
            session = agent.client.sessions.get(agent.session_id)
            # what it asks from now on is answered "cancelled", never allowed
            answer = await agent.client.request_permission(
                session.session_id, ToolCallUpdate(tool_call_id="late", kind="edit",
                                                   locations=[ToolCallLocation(path=target)]),
                [PermissionOption(option_id="allow", name="Allow", kind="allow_once")],
            )  # fmt: skip
            return pinned, answer, agent.process.returncode
        finally:
            await agent.close()

    pinned, answer, alive = asyncio.run(main())
    assert json.loads(pinned.record.message_chunks[0]) == {"mode": "default"}
    assert answer.outcome.outcome == "cancelled"
    assert alive is None  # the agent lives on: only the turn ended


@pytest.mark.integration
def test_an_agent_without_an_asking_mode_runs_no_turn(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    yolo = {"currentModeId": "yolo", "availableModes": [{"id": "yolo", "name": "YOLO"}]}

    async def main() -> None:
        agent = await started(ws, yolo, profile=profile(ask_modes=("default",),
                                                          require_mode=True))  # fmt: skip
        try:
            with pytest.raises(UnsafeMode, match=r"offers the modes \['yolo'\]"):
                await agent.new_session()
        finally:
            await agent.close()

    asyncio.run(main())


@pytest.mark.integration
def test_a_missing_file_reads_empty_where_the_profile_says_so(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()

    async def main() -> tuple[Any, Any]:
        read = json.dumps([{"op": "read", "path": str(ws / "absent.py")}])
        results = []
        for empty in (False, True):
            agent = await started(ws, None, profile=profile(missing_file_reads_empty=empty))
            try:
                await agent.new_session()
                turn = await agent.prompt(read, timeout=30)
                results.append(json.loads(turn.record.message_chunks[0]))
            finally:
                await agent.close()
        return results[0], results[1]

    strict, lenient = asyncio.run(main())
    assert strict["error"]["code"] == -32002
    assert lenient == {"result": {"content": ""}}
