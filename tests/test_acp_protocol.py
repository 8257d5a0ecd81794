"""AcpAgent against a scripted ACP TEST DOUBLE: fs/* and terminal/* through the real wire,
refusals that reach the agent, garbage input reported, malformed replies, death on cue."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from procs.agent import AcpAgent, AgentDied, AgentProtocolError, AgentTimeout, RolePolicy
from procs.agent.result import TurnResult
from tests.helpers.sandbox import sandbox_mode

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]


def run_turn(ws: Path, ops: list[dict[str, Any]], policy: RolePolicy) -> TurnResult:
    async def main() -> TurnResult:
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        agent = await AcpAgent.start(
            AGENT, workspace=ws, policy=policy, env=env, timeout=30, sandbox_mode=sandbox_mode()
        )
        try:
            await agent.new_session(timeout=10)
            return await agent.prompt(json.dumps(ops), timeout=30)
        finally:
            await agent.close()

    return asyncio.run(main())


def replies(result: TurnResult) -> list[dict[str, Any]]:
    return [json.loads(chunk) for chunk in result.record.message_chunks]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("a = 1\n")
    return workspace


@pytest.mark.integration  # the agent double as a process
def test_fs_calls_are_served_and_refusals_reach_the_agent(ws: Path) -> None:
    ops = [
        {"op": "read", "path": str(ws / "src" / "app.py")},
        {"op": "write", "path": str(ws / "src" / "new.py"), "content": "n = 1\n"},
        {"op": "write", "path": str(ws / "tests" / "test_new.py"), "content": "x\n"},
        {"op": "write", "path": str(ws.parent / "escape.py"), "content": "x\n"},
        {"op": "read", "path": "/etc/hostname"},
    ]
    result = run_turn(ws, ops, RolePolicy.for_role("implementer"))
    assert result.stop_reason == "end_turn"
    read, wrote, test_write, escape, outside_read = replies(result)
    assert read == {"result": {"content": "a = 1\n"}}
    assert "result" in wrote
    assert (ws / "src" / "new.py").read_text() == "n = 1\n"
    assert test_write["error"]["code"] == -32003
    assert "role implementer may not write tests" in test_write["error"]["message"]
    assert "outside the workspace" in escape["error"]["message"]
    assert "outside the workspace" in outside_read["error"]["message"]
    assert not (ws / "tests").exists() and not (ws.parent / "escape.py").exists()
    assert [(f.op, f.ok) for f in result.record.files] == [
        ("read", True),
        ("write", True),
        ("write", False),
        ("write", False),
        ("read", False),
    ]


@pytest.mark.integration  # the agent double as a process
def test_a_hard_link_to_a_file_outside_is_neither_read_nor_written_through(ws: Path) -> None:
    outside = ws.parent / "secret.txt"
    outside.write_text("secret\n")
    os.link(outside, ws / "src" / "linked.py")
    ops = [
        {"op": "read", "path": "src/linked.py"},
        {"op": "write", "path": "src/linked.py", "content": "mine\n"},
    ]
    result = run_turn(ws, ops, RolePolicy.for_role("implementer"))
    read, wrote = replies(result)
    assert read["error"]["code"] == -32003
    assert "hard links" in read["error"]["message"]
    assert "secret" not in json.dumps(read)
    assert "result" in wrote  # a write replaces the link with a file of its own
    assert outside.read_text() == "secret\n"
    assert (ws / "src" / "linked.py").read_text() == "mine\n"


@pytest.mark.integration  # the agent double as a process
def test_terminal_runs_in_the_workspace_with_an_output_cap(ws: Path) -> None:
    script = "import os; print(os.getcwd()); print('y' * 5000)"
    ops = [
        {"op": "terminal", "command": sys.executable, "args": ["-c", script],
         "outputByteLimit": 1000},
        {"op": "terminal", "command": "sh", "args": ["-c", "exit 7"]},
    ]  # fmt: skip
    result = run_turn(ws, ops, RolePolicy.for_role("architect", may_execute=True))
    first, second = replies(result)
    assert first["exit"] == {"exitCode": 0}
    assert first["output"]["truncated"] is True
    assert len(first["output"]["output"]) <= 1000
    assert first["output"]["output"].endswith("y" * 100 + "\n")
    assert second["exit"] == {"exitCode": 7}
    refused = run_turn(ws, ops[1:], RolePolicy.for_role("architect"))
    assert "may not run commands" in replies(refused)[0]["error"]["message"]


@pytest.mark.integration  # the agent double as a process
def test_garbage_from_the_agent_is_reported(ws: Path) -> None:
    result = run_turn(ws, [{"op": "garbage"}], RolePolicy.for_role("reviewer"))
    assert result.stop_reason == "end_turn"
    assert len(result.protocol_violations) == 3
    assert "not JSON" in result.protocol_violations[0]
    assert "not an object" in result.protocol_violations[1]
    assert "not JSON-RPC 2.0" in result.protocol_violations[2]


@pytest.mark.integration  # the agent double as a process
def test_malformed_prompt_reply_is_a_protocol_error(ws: Path) -> None:
    with pytest.raises(AgentProtocolError, match="session/prompt is not valid ACP"):
        run_turn(ws, [{"op": "bad_result"}], RolePolicy.for_role("reviewer"))


@pytest.mark.integration  # the agent double as a process
def test_agent_death_names_status_and_stderr(ws: Path) -> None:
    with pytest.raises(AgentDied, match="exited with status 3 during session/prompt") as info:
        run_turn(ws, [{"op": "die"}], RolePolicy.for_role("reviewer"))
    assert "dying on cue" in str(info.value)


@pytest.mark.integration  # the agent double as a process
def test_missing_agent_command_is_a_clear_error(ws: Path) -> None:
    async def main() -> None:
        await AcpAgent.start(
            ["/nonexistent/agent"], workspace=ws, policy=RolePolicy.for_role("reviewer")
        )

    with pytest.raises(FileNotFoundError, match="/nonexistent/agent"):
        asyncio.run(main())


@pytest.mark.integration  # the agent double as a process
def test_agent_that_never_answers_times_out(ws: Path) -> None:
    async def main() -> None:
        await AcpAgent.start(
            ["sleep", "30"], workspace=ws, policy=RolePolicy.for_role("reviewer"),
            env={"PATH": "/usr/bin:/bin"}, timeout=0.5,
        )  # fmt: skip

    with pytest.raises(AgentTimeout, match=r"did not answer initialize within 0\.5s"):
        asyncio.run(main())


@pytest.mark.integration  # the agent double as a process
def test_turn_past_its_timeout_is_cancelled_and_says_so(ws: Path) -> None:
    async def main() -> tuple[TurnResult, dict[str, Any]]:
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        agent = await AcpAgent.start(
            AGENT, workspace=ws, policy=RolePolicy.for_role("reviewer"), env=env, timeout=30
        )
        try:
            await agent.new_session(timeout=10)
            result = await agent.prompt(json.dumps([{"op": "wait_cancel"}]), timeout=0.3)
            return result, agent.statistics()
        finally:
            await agent.close()

    result, stats = asyncio.run(main())
    assert (result.stop_reason, result.timed_out) == ("cancelled", True)
    assert stats["received"] == 3  # initialize, session/new, session/prompt replies
    assert stats["protocol_violations"] == 0


def test_overlong_line_is_skipped_and_reported() -> None:
    from procs.agent.transport import AgentTransport

    async def main() -> tuple[dict | None, dict | None, dict | None, list[str]]:
        reader = asyncio.StreamReader(limit=64)
        reader.feed_data(b'{"jsonrpc": "2.0", "id": 1, "result": "' + b"x" * 500 + b'"}\n')
        reader.feed_data(b'{"jsonrpc": "2.0", "id": 2, "result": null}\n')
        reader.feed_eof()
        transport = AgentTransport(reader, None, max_line_bytes=64)  # type: ignore[arg-type]
        return (
            await transport.receive(), await transport.receive(), await transport.receive(),
            transport.violations,
        )  # fmt: skip

    dropped, second, end, violations = asyncio.run(main())
    # The reply that was too long fails the call it answers, instead of leaving it waiting.
    assert dropped is not None and (dropped["id"], dropped["error"]["code"]) == (1, -32600)
    assert second == {"jsonrpc": "2.0", "id": 2, "result": None}
    assert end is None
    assert violations == ["agent sent a line longer than 64 bytes"]


def test_an_elicitation_is_declined_with_a_reason(ws: Path) -> None:
    from acp.schema import ElicitationFormSessionMode

    from procs.agent import FactoryClient

    client = FactoryClient(ws, RolePolicy.for_role("implementer"))
    mode = ElicitationFormSessionMode(session_id="s", requested_schema={"type": "object"})
    answer = asyncio.run(client.create_elicitation("Which database?", mode))
    dumped = answer.model_dump(by_alias=True, exclude_none=True)
    assert dumped["action"] == "decline"
    assert "no person answers" in dumped["_meta"]["reason"]
