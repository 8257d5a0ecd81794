"""The loop's kept agent (procs/loop/kept_agent.py: `procs.agent.service --serve`) with
an agent other than opencode: claude-agent-acp from npm, its profile picked by the
command's name, its model the scripted Anthropic TEST DOUBLE (tests/doubles/tool_models.py)
behind the model gateway. The service writes the agent's config from --model-url and
pins every session to the mode that asks ("default": Claude's own is "auto"), so the
auditor's turn writes a test and the implementer's attempt at tests/ comes back to the
loop as a refusal (TurnReply.outcome "refused", the reason in `refusals`), the file
unwritten: with one agent for both roles, and with an agent per role, each process in
its role's sandbox (--sandbox-role, bwrap). Skips when claude-agent-acp is not installed
(.ci/run installs it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.llm.gateway import Gateway
from procs.llm.gateway_config import GatewayConfig
from procs.llm.gateway_store import GatewayStore
from procs.llm.tickets import FlockTickets
from procs.loop.agent_service import AgentModel
from procs.loop.kept_agent import KeptAgentTurns
from procs.loop.state import FactoryLoopState
from procs.loop.turns import Turn
from tests.doubles.tool_models import AnthropicToolModel, actions_line
from tests.helpers.sandbox import bwrap_unusable

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "claude-agent-acp"
CLAUDE = str(LOCAL) if LOCAL.exists() else shutil.which("claude-agent-acp")
KEY_ENV = "FACTORY_TEST_DOUBLE_KEY"
pytestmark = [
    pytest.mark.integration,  # the agent service, claude-agent-acp, gateway and double
    pytest.mark.skipif(CLAUDE is None, reason="claude-agent-acp not installed (.ci/run "
                       "installs @agentclientprotocol/claude-agent-acp into .ci/node)"),
]  # fmt: skip


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv(KEY_ENV, "upstream-key")
    model = AnthropicToolModel().start()
    upstreams = {"double": {"kind": "anthropic", "base_url": model.base_url,
                            "api_key_env": KEY_ENV}}  # fmt: skip
    store = GatewayStore(tmp_path / "state" / "model_gateway.sqlite")
    front = Gateway(GatewayConfig.from_dict({"upstreams": upstreams}), store,
                    FlockTickets(tmp_path / "tickets", 1))  # fmt: skip
    front.start()
    try:
        yield front
    finally:
        front.stop()
        store.close()
        model.stop()


@pytest.mark.parametrize("sandboxed", [False, True], ids=["one-agent", "sandboxed-per-role"])
def test_claude_as_the_loops_kept_agent_is_pinned_and_its_refusal_is_feedback(
    gateway: Gateway, tmp_path: Path, sandboxed: bool
) -> None:
    assert CLAUDE is not None
    if sandboxed and (why := bwrap_unusable()) is not None:
        pytest.skip(why)
    ws = tmp_path / "ws"
    (ws / "tests").mkdir(parents=True)
    token = gateway.store.issue("fs-kept", "loop-kept", budget_tokens=1_000_000)
    state = FactoryLoopState(loop_id="loop-kept", bead_id="fs-kept", attempt=1,
                             workspace=str(ws), golden_hash="0" * 40)  # fmt: skip

    def turn(role: str, relative: str) -> Turn:
        write = {"tool": "Write", "input": {"file_path": str(ws / relative), "content": "x = 1\n"}}
        return Turn(role=role, workspace=ws, system_prompt=f"You are the {role.upper()}.",
                    prompt=f"Go.\n{actions_line([write])}\n", state=state)  # fmt: skip

    model = AgentModel(gateway.base_url, "double-model", "anthropic", token)
    with KeptAgentTurns([CLAUDE], sandbox_mode="bwrap" if sandboxed else "none", model=model,
                        timeout_s=120, sandbox_agent=sandboxed) as turns:  # fmt: skip
        gateway.store.set_role(token, "auditor")
        audit = turns.auditor(turn("auditor", "tests/test_a.py"))
        gateway.store.set_role(token, "implementer")
        cheat = turns.implementer(turn("implementer", "tests/test_b.py"))
        # sandboxed: an agent per role, each in its role's sandbox
        assert turns.statistics()["agent_starts"] == (2 if sandboxed else 1)
        if sandboxed:  # a network of its own: only the gateway is reachable
            network = turns.statistics()["agent_sandbox"]["network"]
            assert network.startswith("network: isolated"), network
    assert audit.outcome == "completed" and (ws / "tests" / "test_a.py").exists()
    assert cheat.outcome == "refused" and not (ws / "tests" / "test_b.py").exists()
    assert any("may not write tests" in reason for reason in cheat.refusals)
    assert set(gateway.store.usage("fs-kept")["roles"]) == {"auditor", "implementer"}
