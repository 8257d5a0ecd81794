"""Agent profiles as data (procs/agent/profiles.py, profiles.toml): the built-in kinds, an
operator's file that adds one, errors naming the profile and key, and the config each
kind gets in its private HOME (procs/agent/model_setup.py). Pure: no agent runs."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from procs.agent.model_setup import AgentModel, ModelSetupError, agent_environment
from procs.agent.profiles import ProfileError, load_profiles, parse_profiles, profile_for


def test_the_built_in_kinds_and_what_picks_them() -> None:
    profiles = load_profiles()
    assert {"opencode", "claude", "codex", "gemini", "generic"} <= set(profiles)
    assert profile_for(["/x/.bin/claude-agent-acp"], profiles).name == "claude"
    assert profile_for(["codex-acp"], profiles).name == "codex"
    assert profile_for(["gemini", "--acp"], profiles).name == "gemini"
    assert profile_for(["python3", "-m", "x"], profiles).name == "generic"
    assert profiles["gemini"].read_text_file is False
    assert (profiles["claude"].model_api, profiles["codex"].model_api) == ("anthropic", "responses")
    assert profiles["claude"].ask_modes == ("default",) and profiles["claude"].require_mode


def test_an_operators_file_adds_a_kind(tmp_path: Path) -> None:
    extra = tmp_path / "agents.toml"
    extra.write_text(
        '[goose]\ncommand = ["goose", "acp"]\nmatch = ["goose"]\nmodel_api = "openai"\n'
        'ask_modes = ["approve"]\nrequire_mode = true\n'
    )
    profiles = load_profiles(extra)
    assert profile_for(["goose", "acp"], profiles).ask_modes == ("approve",)
    assert "claude" in profiles


@pytest.mark.parametrize(("text", "match"), [
    ('[x]\nmodel_api = "smoke"', "'x': model_api must be one of"),
    ('[x]\nmodel_api = "openai"\nrequire_mode = true', "'x': require_mode needs ask_modes"),
    ('[x]\nmodel_api = "openai"\ncolour = 1', r"'x': \['colour'\] unknown"),
    ('[x]\nmodel_api = "openai"\n[x.files]\n"../k" = "a"', "without '..'"),
    ('[x]\nmodel_api = "openai"\n[x.files]\n"k" = "{model_key}"', "key goes in env only"),
])  # fmt: skip
def test_a_bad_profile_is_named(text: str, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        parse_profiles(text, source="agents.toml")


def test_codex_gets_a_responses_provider_and_the_key_only_in_its_environment(
    tmp_path: Path,
) -> None:
    model = AgentModel("http://127.0.0.1:4000/v1", "qwen", "openai", "fgw-secret")
    with agent_environment("codex", model, tmp_path, base_env={"SECRET": "x"}) as env:
        assert env is not None
        home = Path(env["HOME"])
        config_file = Path(env["CODEX_HOME"]) / "config.toml"
        config = tomllib.loads(config_file.read_text())
        provider = config["model_providers"]["factory"]
        assert (provider["base_url"], provider["wire_api"]) == (model.url, "responses")
        assert env[provider["env_key"]] == "fgw-secret" and "SECRET" not in env
        assert "fgw-secret" not in config_file.read_text()
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        assert not home.is_relative_to(tmp_path)
    assert not home.exists()


def test_claude_and_gemini_get_their_base_urls(tmp_path: Path) -> None:
    claude = AgentModel("http://127.0.0.1:4000", "m", "anthropic", "k")
    with agent_environment("claude", claude, tmp_path) as env:
        assert env is not None and env["ANTHROPIC_BASE_URL"] == claude.url
        assert env["DISABLE_AUTOUPDATER"] == "1" and env["DISABLE_TELEMETRY"] == "1"
        settings = Path(env["HOME"]) / ".claude" / "settings.json"
        assert '"defaultMode": "default"' in settings.read_text()
        # no model call after a turn has ended (a predicted next prompt nobody reads)
        assert env["CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION"] == "false"
        assert json.loads(settings.read_text())["promptSuggestionEnabled"] is False
        # Codex edits existing files from inside the agent sandbox (see profiles.toml)
    with agent_environment("codex", AgentModel("http://h/v1", "m"), tmp_path) as env:
        assert env is not None
        codex = tomllib.loads((Path(env["CODEX_HOME"]) / "config.toml").read_text())
        assert codex["features"]["use_legacy_landlock"] is True
    gemini = AgentModel("http://127.0.0.1:4000", "m", "gemini", "k")
    with agent_environment("gemini", gemini, tmp_path) as env:
        assert env is not None and env["GOOGLE_GEMINI_BASE_URL"] == gemini.url
    with pytest.raises(ModelSetupError, match="claude profile speaks anthropic"):
        agent_environment("claude", gemini.__class__("http://h/v1", "m"), tmp_path).__enter__()
