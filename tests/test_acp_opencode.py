"""The ACP client against a real agent: opencode (npm opencode-ai) in ACP mode, offline.

opencode's model is a local OpenAI-compatible TEST DOUBLE that scripts its replies (a
`write` tool call, then text). One opencode process (HOME/XDG dirs in tmp) serves the
module, each test in a fresh ACP session; the agent-death test kills its own process.
Skips when opencode is not installed (.ci/run installs it into .ci/node).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from procs.agent import AcpAgent, AgentDied, Decision, RolePolicy
from procs.agent.opencode import opencode_command, opencode_env, write_opencode_setup
from tests.doubles.openai_chat import ChatCompletionsDouble, HeldReply, TextReply, ToolCallReply

ROOT = Path(__file__).resolve().parent.parent


def find_opencode() -> str | None:
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "opencode"
    return str(local) if local.exists() else shutil.which("opencode")


OPENCODE = find_opencode()
pytestmark = [
    pytest.mark.integration,  # opencode and the model double as processes
    pytest.mark.skipif(
        OPENCODE is None,
        reason="opencode not installed (.ci/run installs opencode-ai into .ci/node)",
    ),
]


@dataclass
class Rig:
    runner: asyncio.Runner
    agent: AcpAgent
    double: ChatCompletionsDouble
    workspace: Path
    home: Path


async def start_agent(
    home: Path, workspace: Path, double: ChatCompletionsDouble, *, config_dir: Path | None = None
) -> AcpAgent:
    """opencode with its state in `home` and its opencode.json in `config_dir` (or home)."""
    assert OPENCODE is not None
    env = write_opencode_setup(config_dir or home, double.base_url, double.model)
    env.update(opencode_env(home, Path(env["OPENCODE_CONFIG"])))
    return await AcpAgent.start(
        opencode_command(OPENCODE), workspace=workspace,
        policy=RolePolicy.for_role("implementer"), env=env, timeout=90,
    )  # fmt: skip


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    base = tmp_path_factory.mktemp("opencode")
    workspace = base / "ws"
    workspace.mkdir()
    with ChatCompletionsDouble([]) as double, asyncio.Runner() as runner:
        agent = runner.run(start_agent(base / "home", workspace, double))
        try:
            yield Rig(runner, agent, double, workspace, base / "home")
        finally:
            runner.run(agent.close())


@pytest.fixture
def fresh(rig: Rig) -> Iterator[Rig]:
    """A new ACP session on the shared agent, with no review hook and an empty script."""
    rig.agent.client.review = None
    rig.double.set_script([])
    rig.runner.run(rig.agent.new_session(timeout=60))
    yield rig
    rig.agent.client.review = None


def tool_results(double: ChatCompletionsDouble) -> list[str]:
    """What the agent told the model about its tool calls (role=tool messages)."""
    last = double.scripted_requests()[-1]["messages"]
    return [str(m.get("content")) for m in last if m.get("role") == "tool"]


def test_full_turn_writes_through_our_handler(fresh: Rig) -> None:
    target = str(fresh.workspace / "src" / "hello.py")
    fresh.double.set_script(
        [ToolCallReply("write", {"filePath": target, "content": "x = 1\n"}), TextReply("all done")]
    )
    result = fresh.runner.run(fresh.agent.prompt("write src/hello.py", timeout=60))
    assert result.stop_reason == "end_turn"
    assert result.record.message == "all done"
    [permission] = result.record.permissions
    assert (permission.kind, permission.outcome) == ("edit", "allowed")
    writes = [f for f in result.record.files if f.op == "write"]
    assert [(w.path, w.ok) for w in writes] == [(target, True)]
    assert (fresh.workspace / "src" / "hello.py").read_text() == "x = 1\n"
    [call] = result.record.tool_calls.values()
    assert (call.kind, call.status) == ("edit", "completed")
    assert result.protocol_violations == []


def test_refused_writes_reach_the_agent(fresh: Rig, tmp_path: Path) -> None:
    test_file = str(fresh.workspace / "tests" / "test_hello.py")
    outside = str(tmp_path / "elsewhere" / "evil.py")
    fresh.double.set_script(
        [
            ToolCallReply("write", {"filePath": test_file, "content": "def test(): pass\n"}),
            TextReply("gave up on the test"),
            ToolCallReply("write", {"filePath": outside, "content": "boom\n"}),
            TextReply("gave up outside"),
        ]
    )
    result = fresh.runner.run(fresh.agent.prompt("write a test", timeout=60))
    assert result.stop_reason == "end_turn"
    [permission] = result.record.permissions
    assert permission.outcome == "refused"
    assert "role implementer may not write tests" in permission.reason
    assert not (fresh.workspace / "tests" / "test_hello.py").exists()
    [told] = tool_results(fresh.double)
    assert "rejected permission" in told
    assert result.record.message == "gave up on the test"
    [call] = result.record.tool_calls.values()
    assert call.status == "failed"

    result = fresh.runner.run(fresh.agent.prompt("write outside", timeout=60))
    assert result.stop_reason == "end_turn"
    assert [p.outcome for p in result.record.permissions] == ["refused"]
    assert "outside the workspace" in result.record.permissions[0].reason
    assert not (tmp_path / "elsewhere").exists()
    assert "rejected permission" in tool_results(fresh.double)[-1]
    assert result.record.message == "gave up outside"


def test_shell_commands_are_refused_without_may_execute(fresh: Rig) -> None:
    marker = fresh.workspace / "from_shell.txt"
    fresh.double.set_script(
        [
            ToolCallReply("bash", {"command": f"echo hi > {marker}", "description": "write"}),
            TextReply("no shell then"),
        ]
    )
    result = fresh.runner.run(fresh.agent.prompt("use the shell", timeout=60))
    assert result.stop_reason == "end_turn"
    [permission] = result.record.permissions
    assert (permission.kind, permission.outcome) == ("execute", "refused")
    assert "may not run commands" in permission.reason
    assert not marker.exists()
    assert "rejected permission" in tool_results(fresh.double)[-1]


def test_cancel_mid_turn_ends_with_cancelled(fresh: Rig) -> None:
    held = HeldReply(TextReply("too late"))
    fresh.double.set_script([held])

    async def turn() -> str:
        prompt = asyncio.ensure_future(fresh.agent.prompt("think hard", timeout=60))
        assert await asyncio.to_thread(held.started.wait, 30)
        await fresh.agent.cancel()
        result = await prompt
        assert result.timed_out is False
        return result.stop_reason

    assert fresh.runner.run(turn()) == "cancelled"


def test_cancel_answers_a_pending_permission_cancelled(fresh: Rig) -> None:
    target = str(fresh.workspace / "src" / "pending.py")
    fresh.double.set_script([ToolCallReply("write", {"filePath": target, "content": "y = 2\n"})])

    async def stall(call: dict[str, Any], decision: Decision) -> Decision:
        await asyncio.Event().wait()  # an operator who never answers
        return decision

    fresh.agent.client.review = stall

    async def turn() -> Any:
        prompt = asyncio.ensure_future(fresh.agent.prompt("write pending", timeout=60))
        async with asyncio.timeout(30):
            while fresh.agent.client.pending_permissions == 0:
                await asyncio.sleep(0.01)  # polling a condition, bounded by the timeout
        await fresh.agent.cancel()
        return await prompt

    result = fresh.runner.run(turn())
    assert result.stop_reason == "cancelled"
    assert [p.outcome for p in result.record.permissions] == ["cancelled"]
    assert fresh.agent.client.pending_permissions == 0
    assert not (fresh.workspace / "src" / "pending.py").exists()


def test_agent_dying_mid_turn_is_a_clear_error(rig: Rig, tmp_path: Path) -> None:
    held = HeldReply(TextReply("never seen"))
    workspace = tmp_path / "ws"
    workspace.mkdir()

    async def main(double: ChatCompletionsDouble) -> None:
        # Its own process (it gets killed); the shared home reuses opencode's warm caches.
        agent = await start_agent(rig.home, workspace, double, config_dir=tmp_path / "cfg")
        try:
            await agent.new_session(timeout=60)
            prompt = asyncio.ensure_future(agent.prompt("hang", timeout=60))
            assert await asyncio.to_thread(held.started.wait, 30)
            os.killpg(agent.process.pid, signal.SIGKILL)
            with pytest.raises(AgentDied, match="was killed by SIGKILL during session/prompt"):
                await prompt
        finally:
            await agent.close()

    with ChatCompletionsDouble([held]) as double:
        asyncio.run(main(double))
