"""[loop] agent chooses the loop's agent by its profile (procs/agent/profiles.toml or the
operator's profiles_file): its command, the model protocol it speaks (which [loop.model]
kind serves it) and its RAM; the agent service is told the same profile. Bad values are
errors naming the key. The profiles are read from procs.agent as a process, as the loop
does (no agent starts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from procs.loop import kept_agent
from procs.loop.agent_service import AgentModel
from procs.loop.config import DEFAULT_AGENT, LoopConfigError, config_from, load_config
from procs.loop.metering import MeterGrant

ROOT = Path(__file__).resolve().parent.parent
URL = "http://127.0.0.1:1/v1"


def loop(**table: Any) -> dict[str, Any]:
    return {"test_command": ["pytest"], **table}


def model(kind: str) -> dict[str, str]:
    return {"kind": kind, "base_url": URL}


@pytest.mark.parametrize(("agent", "kind", "command", "api", "ram_mb"), [
    ("opencode", "openai", DEFAULT_AGENT, "openai", 800),
    ("claude", "anthropic", ("claude-agent-acp",), "anthropic", 450),
    ("codex", "openai", ("codex-acp",), "responses", 150),
    ("gemini", "gemini", ("gemini", "--acp"), "gemini", 350),
])  # fmt: skip
def test_each_kind_is_chosen_by_name_with_its_command_protocol_and_ram(
    agent: str, kind: str, command: tuple[str, ...], api: str, ram_mb: int
) -> None:
    config = config_from(loop(agent=agent, model=model(kind)))
    assert (config.agent, config.agent_command, config.agent_api) == (agent, command, api)
    assert config.agent_ram_mb == ram_mb


def test_the_default_is_opencode_and_a_command_alone_picks_by_its_basename() -> None:
    default = config_from(loop())
    assert (default.agent, default.agent_command, default.agent_api) == (
        "opencode", DEFAULT_AGENT, "openai",
    )  # fmt: skip
    by_command = config_from(loop(agent_command=["/opt/bin/codex-acp"], model=model("openai")))
    assert (by_command.agent, by_command.agent_api) == ("codex", "responses")
    # a named profile with the operator's own command line for it
    named = config_from(loop(agent="claude", agent_command=["/opt/claude", "--acp"]))
    assert (named.agent, named.agent_command) == ("claude", ("/opt/claude", "--acp"))
    # generic speaks whatever the model server does
    generic = config_from(loop(agent_command=["my-agent"], model=model("gemini")))
    assert (generic.agent, generic.agent_api) == ("generic", "gemini")


def test_an_operators_profiles_file_adds_and_replaces_kinds(tmp_path: Path) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[goose]\ncommand = ["goose", "acp"]\nmodel_api = "anthropic"\nexpected_rss_mb = 300\n'
        '[codex]\ncommand = ["/opt/codex-acp", "--quiet"]\nmodel_api = "responses"\n'
        'ask_modes = ["read-only"]\nrequire_mode = true\n'
    )
    goose = config_from(loop(agent="goose", profiles_file=str(agents), model=model("anthropic")))
    assert (goose.agent_command, goose.agent_api, goose.agent_ram_mb) == (
        ("goose", "acp"), "anthropic", 300,
    )  # fmt: skip
    assert goose.profiles_file == agents
    codex = config_from(loop(agent="codex", profiles_file=str(agents)))
    assert codex.agent_command == ("/opt/codex-acp", "--quiet")


def test_the_agent_service_is_told_the_profile_and_the_gateway_url_its_protocol_takes(
    tmp_path: Path,
) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text('[mine]\ncommand = ["mine"]\nmodel_api = "openai"\n')
    config = config_from(loop(agent="mine", profiles_file=str(agents), sandbox="none"))
    turns = kept_agent.from_config(config, None, model=AgentModel(URL, "m", "openai"))
    argv = turns.settings.argv(tmp_path)
    assert argv[argv.index("--profile") + 1] == "mine"
    assert argv[argv.index("--profiles") + 1] == str(agents)
    assert argv[argv.index("--") + 1 :] == ["mine"]
    assert turns.agent_ram_mb == 800
    grant = MeterGrant("b", "t", "http://gw/v1", "http://gw")
    assert [grant.base_url(api) for api in ("openai", "responses", "anthropic", "gemini")] == [
        "http://gw/v1", "http://gw/v1", "http://gw", "http://gw",
    ]  # fmt: skip


@pytest.mark.parametrize(("table", "message"), [
    (loop(agent="nope"), "[loop] agent: unknown agent profile 'nope'; known: ['claude', "),
    (loop(agent=3), "[loop] agent must be a profile's name (a non-empty string), got 3"),
    (loop(agent=" "), "[loop] agent must be a profile's name"),
    (loop(agent="generic"), "[loop] agent = 'generic': its profile names no command; set "
                            "[loop] agent_command"),
    (loop(profiles_file="agents.toml"), "[loop] profiles_file must be an absolute path, got "
                                        "'agents.toml'"),
    (loop(profiles_file="/nonexistent/agents.toml"), "[loop] profiles_file: cannot read "
                                                     "/nonexistent/agents.toml"),
    (loop(agent="claude", model=model("openai")), "[loop.model] kind 'openai' cannot serve the "
     "claude agent: it speaks Anthropic Messages; set kind = 'anthropic'"),
    (loop(agent="codex", model=model("anthropic")), "it speaks OpenAI Responses; set kind = "
                                                    "'openai'"),
    (loop(agent="gemini", model=model("openai")), "it speaks the Gemini API; set kind = 'gemini'"),
    (loop(model=model("anthropic")), "cannot serve the opencode agent: it speaks OpenAI Chat"),
    (loop(agent="codex", model=model("responses")), "[loop.model] kind must be one of ('openai', "
                                                    "'anthropic', 'gemini'), got 'responses'"),
])  # fmt: skip
def test_a_bad_agent_setting_is_named(table: dict[str, Any], message: str) -> None:
    with pytest.raises(LoopConfigError, match=re.escape(message)):
        config_from(table)


def test_a_malformed_profiles_file_is_named_with_its_key(tmp_path: Path) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text('[x]\nmodel_api = "smoke"\n')
    with pytest.raises(LoopConfigError, match=r"\[loop\] profiles_file: .*agents\.toml: agent "
                       r"profile 'x': model_api must be one of"):  # fmt: skip
        config_from(loop(agent="x", profiles_file=str(agents)))
    agents.write_text("[x\n")
    with pytest.raises(LoopConfigError, match=r"\[loop\] profiles_file: .*not TOML"):
        config_from(loop(agent="x", profiles_file=str(agents)))


def test_the_example_loop_config_is_valid_and_names_its_agent() -> None:
    config = load_config(ROOT / "systemd" / "loop.example.toml")
    assert config.agent == "opencode" and config.agent_command == DEFAULT_AGENT
    assert config.model is not None and config.agent_api == "openai"
