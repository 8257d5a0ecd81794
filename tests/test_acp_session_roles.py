"""The role is a property of the session, not of the agent: one agent process (the
scripted ACP TEST DOUBLE, tests/doubles/acp_agent.py) serves an implementer's session
and an auditor's, and each request is judged by the policy of the session it names. A
request naming a session that was never opened, or whose turn has ended, is refused.
A turn's outcome tells a role refusal apart from a cancel and a timeout."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from procs.agent import AcpAgent, RolePolicy
from procs.agent.result import TurnResult
from tests.harness import ROOT

pytestmark = pytest.mark.integration  # the agent double as a process

AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def replies(result: TurnResult) -> list[dict[str, Any]]:
    return [json.loads(chunk) for chunk in result.record.message_chunks]


def edit(ws: Path, relative: str) -> list[dict[str, Any]]:
    """A permission request to edit `relative` and an fs write of it."""
    path = str(ws / relative)
    return [{"op": "ask_many", "count": 1, "path": path},
            {"op": "write", "path": path, "content": f"# {relative}\n"}]  # fmt: skip


def allowed(answer: dict[str, Any]) -> bool:
    [permission] = answer["answers"]
    return bool(permission["outcome"] == {"outcome": "selected", "optionId": "allow"})


async def started(ws: Path, **kw: Any) -> AcpAgent:
    return await AcpAgent.start(AGENT, workspace=ws, env=ENV, timeout=30, sandbox_mode="none",
                                **kw)  # fmt: skip


def test_two_roles_on_one_agent_each_get_their_own_policy(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()

    async def main() -> tuple[TurnResult, TurnResult, set[int]]:
        agent = await started(ws)  # no default policy: each session names its role
        try:
            await agent.new_session(timeout=10, policy=RolePolicy.for_role("implementer"))
            ops = [{"op": "pid"}, *edit(ws, "tests/test_a.py"), *edit(ws, "calc.py")]
            implementer = await agent.prompt(json.dumps(ops), timeout=30)
            await agent.end_session()
            await agent.new_session(timeout=10, policy=RolePolicy.for_role("auditor"))
            ops = [{"op": "pid"}, *edit(ws, "tests/test_a.py"), *edit(ws, "calc2.py")]
            auditor = await agent.prompt(json.dumps(ops), timeout=30)
            pids = {replies(implementer)[0]["pid"], replies(auditor)[0]["pid"]}
            return implementer, auditor, pids
        finally:
            await agent.close()

    implementer, auditor, pids = asyncio.run(main())
    assert len(pids) == 1, "both turns ran on one agent process"
    _, test_ask, test_write, code_ask, code_write = replies(implementer)
    assert not allowed(test_ask) and "error" in test_write
    assert allowed(code_ask) and code_write == {"result": {}}
    assert implementer.outcome == "refused"
    assert implementer.refusals[0] == "role implementer may not write tests (tests/test_a.py)"
    _, test_ask, test_write, code_ask, code_write = replies(auditor)
    assert allowed(test_ask) and test_write == {"result": {}}
    assert not allowed(code_ask) and "may not write non-test code" in code_write["error"]["message"]
    assert (ws / "tests" / "test_a.py").read_text() == "# tests/test_a.py\n"  # the auditor's
    assert (ws / "calc.py").exists() and not (ws / "calc2.py").exists()
    assert [p.outcome for p in auditor.record.permissions] == ["allowed", "refused"]


def test_requests_for_an_unknown_or_ended_session_are_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()

    async def main() -> tuple[str, TurnResult]:
        agent = await started(ws, policy=RolePolicy.for_role("architect"))
        try:
            ended = await agent.new_session(timeout=10)
            await agent.end_session()
            await agent.new_session(timeout=10)
            ops = [
                {"op": "write", "path": str(ws / "a.py"), "content": "x\n", "session": ended},
                {"op": "write", "path": str(ws / "b.py"), "content": "x\n", "session": "nope"},
                {"op": "write", "path": str(ws / "c.py"), "content": "x\n"},
            ]
            return ended, await agent.prompt(json.dumps(ops), timeout=30)
        finally:
            await agent.close()

    ended, result = asyncio.run(main())
    old, unknown, own = replies(result)
    assert old["error"]["code"] == -32602  # invalid params
    assert f"unknown session {ended!r}" in old["error"]["data"]["details"]
    assert "its turn has ended" in old["error"]["data"]["details"]
    assert "unknown session 'nope'" in unknown["error"]["data"]["details"]
    assert own == {"result": {}}
    assert sorted(p.name for p in ws.iterdir()) == ["c.py"]


def test_a_session_needs_a_policy_and_an_offered_terminal(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()

    async def main() -> None:
        agent = await started(ws)
        try:
            with pytest.raises(ValueError, match="needs a role policy"):
                await agent.new_session(timeout=10)
            runner = RolePolicy.for_role("implementer", may_execute=True)
            with pytest.raises(ValueError, match="not offered terminals"):
                agent.client.open_session("s-1", runner)
        finally:
            await agent.close()

    asyncio.run(main())


def test_outcomes_tell_refused_from_cancelled_and_timed_out(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()

    async def main() -> list[TurnResult]:
        agent = await started(ws, policy=RolePolicy.for_role("reviewer"))
        results = []
        try:
            for ops, timeout in (
                ([{"op": "write", "path": str(ws / "x.py"), "content": "x\n"}], 30.0),
                ([{"op": "wait_cancel"}], 0.5),
                ([], 30.0),
            ):
                await agent.new_session(timeout=10)
                results.append(await agent.prompt(json.dumps(ops), timeout=timeout))
                await agent.end_session()
            await agent.new_session(timeout=10)
            stop = asyncio.Event()
            turn = asyncio.ensure_future(
                agent.prompt(json.dumps([{"op": "wait_cancel"}]), timeout=30, stop=stop)
            )
            stop.set()
            results.append(await turn)
        finally:
            await agent.close()
        return results

    refused, timed_out, completed, cancelled = asyncio.run(main())
    assert (refused.outcome, refused.stop_reason) == ("refused", "end_turn")
    assert refused.refusals == ["role reviewer may not write any file (x.py)"]
    assert refused.to_dict()["outcome"] == "refused"
    assert (timed_out.outcome, timed_out.stop_reason) == ("timed_out", "cancelled")
    assert (completed.outcome, completed.refusals) == ("completed", [])
    assert (cancelled.outcome, cancelled.stop_reason, cancelled.stopped) == (
        "cancelled", "cancelled", True,
    )  # fmt: skip


def test_a_permission_request_is_judged_on_the_whole_tool_call(tmp_path: Path) -> None:
    """The request names only the toolCallId; its kind and path came in session/update."""
    ws = tmp_path / "ws"
    ws.mkdir()

    async def main() -> TurnResult:
        agent = await started(ws, policy=RolePolicy.for_role("implementer"))
        try:
            await agent.new_session(timeout=10)
            ops = [{"op": "announce_then_ask", "kind": "edit", "path": str(ws / "calc.py")},
                   {"op": "announce_then_ask", "kind": "edit",
                    "path": str(ws / "tests" / "test_calc.py")}]  # fmt: skip
            return await agent.prompt(json.dumps(ops), timeout=30)
        finally:
            await agent.close()

    result = asyncio.run(main())
    code, test = replies(result)
    assert code["result"]["outcome"] == {"outcome": "selected", "optionId": "allow"}
    assert test["result"]["outcome"] == {"outcome": "selected", "optionId": "reject"}
    allowed_code, refused_test = result.record.permissions
    assert (allowed_code.kind, allowed_code.paths) == ("edit", [str(ws / "calc.py")])
    assert (refused_test.kind, refused_test.outcome) == ("edit", "refused")
    assert "may not write tests" in refused_test.reason
