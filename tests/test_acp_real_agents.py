"""The ACP client against real agents from npm besides opencode: claude-agent-acp (Claude
Agent SDK, Anthropic Messages), codex-acp (Codex, OpenAI Responses) and Gemini CLI
(`gemini --acp`, the Gemini API), offline.

Each agent is started by its profile (procs/agent/profiles.toml: private HOME, its config
files, telemetry and auto-update off) against a scripted model, a TEST DOUBLE
(tests/doubles/tool_models.py) that calls the agent's own tools (Claude's Write, Codex's
apply_patch through exec_command, Gemini's write_file), through the model gateway
(procs/llm: the agent holds a gateway token as its key). One agent per kind serves the
module, a session per test under the test's role:
- an auditor turn writes a test; an implementer turn writes code;
- an implementer's attempt to write under tests/ is refused (a permission request the
  role refuses: the turn's outcome is "refused") and nothing reaches the disk;
- the agent's own default or configured mode approves edits by itself (Claude's "auto"
  as shipped, or "acceptEdits"; Codex's "full-access"): the session is
  pinned to the mode that asks, so the same attempt is refused too;
- an agent that never asks (a profile that takes its auto mode for an asking one), its
  process in the implementer's sandbox (procs/agent/agent_sandbox.py, bwrap, a network
  of its own where only the gateway is reachable): its own write under tests/ fails
  read-only, its write of code succeeds;
- the gateway's token counts per role are the double's, for all three protocols.
Skips, naming the package, when an agent is not installed (.ci/run installs them into
.ci/node).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from procs.agent import AcpAgent, RolePolicy
from procs.agent.model_setup import AgentModel, agent_environment
from procs.agent.profiles import AgentProfile, load_profiles
from procs.llm.gateway import Gateway
from procs.llm.gateway_config import GatewayConfig
from procs.llm.gateway_store import GatewayStore
from procs.llm.tickets import FlockTickets
from tests.doubles.tool_models import (
    AnthropicToolModel,
    GeminiToolModel,
    ResponsesToolModel,
    actions_line,
)
from tests.helpers.sandbox import bwrap_unusable
from tests.waiting import WaitTimeout, wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
PACKAGES = {
    "claude": "@agentclientprotocol/claude-agent-acp",
    "codex": "@zed-industries/codex-acp",
    "gemini": "@google/gemini-cli",
}
ToolModel = AnthropicToolModel | ResponsesToolModel | GeminiToolModel
# kind -> (the model double, the gateway upstream's kind, the model's name)
MODELS: dict[str, tuple[type[ToolModel], str, str]] = {
    "claude": (AnthropicToolModel, "anthropic", "double-model"),
    "codex": (ResponsesToolModel, "openai", "double-model"),
    "gemini": (GeminiToolModel, "gemini", "gemini-2.5-flash"),
}
BEAD = "fs-agents"
UPSTREAM_KEY_ENV = "FACTORY_TEST_DOUBLE_KEY"  # the gateway sends it to the double
pytestmark = pytest.mark.integration  # real agents and model doubles as processes


def find(binary: str) -> str | None:
    local = BIN / binary
    return str(local) if local.exists() else shutil.which(binary)


@dataclass
class Rig:
    kind: str
    runner: asyncio.Runner
    agent: AcpAgent
    model: ToolModel
    workspace: Path
    gateway: Gateway
    token: str
    # the double's tokens per role, as the turns went (input, output)
    tokens: dict[str, list[int]]

    def turn(self, role: str, actions: list[dict[str, Any]]) -> Any:
        before = dict(self.model.tokens)
        self.gateway.store.set_role(self.token, role)  # what the loop does before each turn
        try:
            return self._turn(role, actions)
        finally:
            spent = self.tokens.setdefault(role, [0, 0])
            spent[0] += self.model.tokens["input"] - before["input"]
            spent[1] += self.model.tokens["output"] - before["output"]

    def _turn(self, role: str, actions: list[dict[str, Any]]) -> Any:
        async def run() -> Any:
            await self.agent.new_session(policy=RolePolicy.for_role(role))
            session = self.agent.client.sessions.get(self.agent.session_id)
            try:
                prompt = f"Do exactly this.\n{actions_line(actions)}\n"
                return await self.agent.prompt(prompt, timeout=120), session
            finally:
                await self.agent.end_session()

        return self.runner.run(run())

    def write(self, relative: str, content: str) -> list[dict[str, Any]]:
        """The agent's own tool call that creates `relative` with `content`."""
        path = self.workspace / relative
        if self.kind == "claude":
            return [{"tool": "Write", "input": {"file_path": str(path), "content": content}}]
        if self.kind == "gemini":
            return [{"tool": "write_file", "input": {"file_path": str(path), "content": content}}]
        body = "".join(f"+{line}\n" for line in content.splitlines())
        patch = f"*** Begin Patch\n*** Add File: {relative}\n{body}*** End Patch\n"
        command = f"apply_patch <<'EOF'\n{patch}EOF\n"
        return [{"tool": "exec_command", "input": {"cmd": command, "workdir": str(self.workspace)}}]


def start(
    kind: str, profile: AgentProfile, base: Path, sandbox_role: RolePolicy | None = None
) -> Iterator[Rig]:
    binary = find(profile.command[0])
    if binary is None:
        pytest.skip(f"{profile.command[0]} not installed (.ci/run installs {PACKAGES[kind]} "
                    "into .ci/node)")  # fmt: skip
    workspace = base / "ws"
    (workspace / "tests").mkdir(parents=True)
    (workspace / "tests" / "test_kept.py").write_text("def test_kept():\n    assert True\n")
    double, upstream, name = MODELS[kind]
    model: ToolModel = double()
    with contextlib.ExitStack() as stack, asyncio.Runner() as runner:
        model.start()
        stack.callback(model.stop)
        # The agent's model traffic goes through the model gateway, metered per role
        upstreams = {"double": {"kind": upstream, "base_url": model.base_url,
                                "api_key_env": UPSTREAM_KEY_ENV}}  # fmt: skip
        config = GatewayConfig.from_dict({"upstreams": upstreams})
        store = GatewayStore(base / "state" / "model_gateway.sqlite")
        stack.callback(store.close)
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        monkeypatch.setenv(UPSTREAM_KEY_ENV, "upstream-key")
        gateway = Gateway(config, store, FlockTickets(base / "tickets", 1))
        gateway.start()
        stack.callback(gateway.stop)
        token = store.issue(BEAD, f"loop-{kind}", budget_tokens=10_000_000)
        url = gateway.openai_base_url if upstream == "openai" else gateway.base_url
        api = "openai" if upstream == "openai" else upstream
        setting = AgentModel(url, name, api, token)
        env = stack.enter_context(agent_environment(profile, setting, workspace))
        agent = runner.run(AcpAgent.start(
            [binary, *profile.command[1:]], workspace=workspace, env=env, timeout=90,
            policy=RolePolicy.for_role("implementer"), profile=profile,
            sandbox_mode="bwrap" if sandbox_role else "none", sandbox_role=sandbox_role,
            model_url=url,  # sandboxed: the one address its network reaches
        ))  # fmt: skip
        try:
            yield Rig(kind, runner, agent, model, workspace, gateway, token, {})
        finally:
            runner.run(agent.close())


@pytest.fixture(scope="module", params=list(PACKAGES))
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    kind = request.param
    yield from start(kind, load_profiles()[kind], tmp_path_factory.mktemp(kind))


def test_an_auditor_turn_writes_a_test(rig: Rig) -> None:
    result, session = rig.turn(
        "auditor", rig.write("tests/test_hello.py", "def test_x():\n    pass")
    )
    assert session.mode in ("default", "read-only")  # pinned
    assert result.outcome == "completed", (result.to_dict(), rig.agent.stderr_tail(2000))
    assert (rig.workspace / "tests" / "test_hello.py").read_text().startswith("def test_x")


def test_an_implementer_turn_writes_code(rig: Rig) -> None:
    result, _ = rig.turn("implementer", rig.write("src/hello.py", "print('hello')"))
    assert result.outcome == "completed", (result.to_dict(), rig.agent.stderr_tail(2000))
    assert (rig.workspace / "src" / "hello.py").read_text().strip() == "print('hello')"


def test_an_implementer_may_not_write_tests(rig: Rig) -> None:
    kept = (rig.workspace / "tests" / "test_kept.py").read_text()
    result, session = rig.turn("implementer", rig.write("tests/test_evil.py", "assert True"))
    assert result.outcome == "refused", (result.to_dict(), rig.agent.stderr_tail(2000))
    assert any("may not write tests" in r for r in result.refusals)
    assert not (rig.workspace / "tests" / "test_evil.py").exists()
    assert (rig.workspace / "tests" / "test_kept.py").read_text() == kept
    assert session.unsafe_mode is None


def test_the_gateway_counts_each_roles_tokens_as_the_double_reported_them(rig: Rig) -> None:
    """Last of the module's tests on `rig` (pytest runs them in file order)."""
    assert {"auditor", "implementer"} <= set(rig.tokens)
    expected = {role: spent for role, spent in rig.tokens.items() if spent != [0, 0]}

    def counted() -> dict[str, list[int]]:
        roles = rig.gateway.store.usage(BEAD)["roles"]
        return {role: [r["input_tokens"], r["output_tokens"]] for role, r in roles.items()}

    # The double counts a call once its answer went out; the gateway once it read the
    # answer's usage, a moment later: wait for it, bounded (a wrong count stays wrong and
    # fails). Every call falls inside its turn: Claude's prompt suggestion, a call made
    # after each turn had ended (so it raced the next turn's role and the test's
    # snapshots: counts one call off), is off in its profile.
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: counted() == expected, timeout=10, what="the gateway's counts")
    assert counted() == expected


AUTO_APPROVING = {
    # Claude as shipped (no defaultMode): sessions start in "auto", Claude decides alone
    "claude-auto": ("claude", ".claude/settings.json", "{}"),
    "claude-acceptEdits": (
        "claude",
        ".claude/settings.json",
        '{"permissions": {"defaultMode": "acceptEdits"}}',
    ),
    # Codex: never ask, no sandbox: session/new reports "full-access"
    "codex-full-access": ("codex", ".codex/config.toml", None),
    # Gemini CLI 0.61: its ACP sessions start in "default" whatever --yolo or its settings
    # say, so it has no case here (its "yolo" and "autoEdit" are never pinned to).
}


@pytest.fixture(scope="module", params=list(AUTO_APPROVING))
def auto_rig(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    """An agent whose own config starts every session in a mode that approves edits."""
    kind, path, text = AUTO_APPROVING[request.param]
    profile = load_profiles()[kind]
    if text is None:
        text = (
            profile.files[path]
            .replace('"on-request"', '"never"')
            .replace('sandbox_mode = "read-only"', 'sandbox_mode = "danger-full-access"')
        )
    files = {**profile.files, path: text}
    auto = AgentProfile(**{**profile.__dict__, "files": files})
    yield from start(kind, auto, tmp_path_factory.mktemp(request.param))


def test_an_agent_that_starts_in_an_auto_approve_mode_is_pinned_and_refused(
    auto_rig: Rig,
) -> None:
    kept = (auto_rig.workspace / "tests" / "test_kept.py").read_text()
    result, session = auto_rig.turn("implementer", auto_rig.write("tests/test_evil.py", "x = 1"))
    assert session.started_in in ("auto", "acceptEdits", "full-access")
    assert session.mode in ("default", "read-only")  # pinned before the turn: it asks
    assert result.outcome == "refused", (result.to_dict(), auto_rig.agent.stderr_tail(2000))
    assert not (auto_rig.workspace / "tests" / "test_evil.py").exists()
    assert (auto_rig.workspace / "tests" / "test_kept.py").read_text() == kept


@pytest.fixture(scope="module", params=["claude", "codex"])
def unpinned_sandboxed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    """An agent that never asks (its auto-approve mode, no pinning: what a bug in an agent
    or a new mode would give), its process in the implementer's sandbox."""
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)
    kind = request.param
    name = {"claude": "claude-acceptEdits", "codex": "codex-full-access"}[kind]
    _, path, text = AUTO_APPROVING[name]
    profile = load_profiles()[kind]
    if text is None:
        text = (
            profile.files[path]
            .replace('"on-request"', '"never"')
            .replace('sandbox_mode = "read-only"', 'sandbox_mode = "danger-full-access"')
        )
    files = {**profile.files, path: text}
    # a profile that takes the auto-approve mode for one that asks: pinning cannot help
    unpinned = AgentProfile(**{**profile.__dict__, "files": files,
                               "ask_modes": ("acceptEdits", "full-access")})  # fmt: skip
    yield from start(kind, unpinned, tmp_path_factory.mktemp(f"{kind}-sandboxed"),
                     sandbox_role=RolePolicy.for_role("implementer"))  # fmt: skip


def test_the_sandbox_binds_an_agent_that_never_asks(unpinned_sandboxed: Rig) -> None:
    rig = unpinned_sandboxed
    assert rig.agent.sandbox is not None  # its network: its own, the gateway relayed in
    assert rig.agent.sandbox.status()["network"].startswith("network: isolated")
    code, _ = rig.turn("implementer", rig.write("src/ok.py", "x = 1"))
    assert (rig.workspace / "src" / "ok.py").exists(), (code.to_dict(), rig.agent.stderr_tail())
    kept = (rig.workspace / "tests" / "test_kept.py").read_text()
    _, session = rig.turn("implementer", rig.write("tests/test_evil.py", "x = 1"))
    assert session.mode in ("acceptEdits", "full-access")  # it never asks
    assert not (rig.workspace / "tests" / "test_evil.py").exists()  # EROFS in the sandbox
    assert (rig.workspace / "tests" / "test_kept.py").read_text() == kept
    failed = ("read-only", "failed to write")  # Claude: EROFS's text; Codex: its own
    results = rig.model.tool_results
    assert any(why in text.lower() for text in results for why in failed), results
    with pytest.raises(ValueError, match="sandbox of role implementer"):  # one role each
        rig.runner.run(rig.agent.new_session(policy=RolePolicy.for_role("auditor")))
