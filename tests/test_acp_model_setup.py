"""The agent's model config, written by the agent service (procs/agent/model_setup.py):
opencode gets opencode.json in a private HOME outside the workspace, holding the key
(nowhere else), removed at the end; other agents get the endpoint in their environment."""

from __future__ import annotations

import json
import stat
import tempfile
from pathlib import Path

import pytest

from procs.agent.model_setup import (
    AgentModel,
    ModelSetupError,
    agent_environment,
    default_profile,
)

MODEL = AgentModel("http://127.0.0.1:4000/v1", "qwen", "openai", "fgw-secret")


def test_opencode_gets_a_private_home_with_its_config_removed_at_the_end(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with agent_environment("opencode", MODEL, workspace, base_env={"SECRET": "x"}) as env:
        assert env is not None
        home = Path(env["HOME"])
        config_file = Path(env["OPENCODE_CONFIG"])
        assert config_file.parent == home and not home.is_relative_to(workspace)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        provider = json.loads(config_file.read_text())["provider"]["factory"]
        assert provider["options"] == {"baseURL": MODEL.url, "apiKey": "fgw-secret"}
        assert list(provider["models"]) == ["qwen"]
        assert "fgw-secret" not in env.values() and "SECRET" not in env  # isolated
    assert not home.exists()


def test_other_agents_get_the_endpoint_in_their_environment(tmp_path: Path) -> None:
    with agent_environment("generic", MODEL, tmp_path, base_env={"KEEP": "1"}) as env:
        assert env is not None
        assert (env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"]) == (MODEL.url, "fgw-secret")
        assert env["FACTORY_MODEL_NAME"] == "qwen" and env["KEEP"] == "1"
    with agent_environment("generic", None, tmp_path) as env:
        assert env is None  # no model: the agent's own config, our environment


def test_what_cannot_be_configured_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    anthropic = AgentModel("http://127.0.0.1:4000", "claude", "anthropic", "k")
    with pytest.raises(ModelSetupError, match="opencode profile speaks openai"):
        agent_environment("opencode", anthropic, tmp_path).__enter__()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "ws" / "tmp"))
    (tmp_path / "ws" / "tmp").mkdir(parents=True)
    with pytest.raises(ModelSetupError, match="inside the workspace"):
        agent_environment("opencode", MODEL, tmp_path / "ws").__enter__()
    assert list((tmp_path / "ws" / "tmp").iterdir()) == []


def test_the_profile_follows_the_commands_name() -> None:
    assert default_profile(["/x/node_modules/.bin/opencode", "acp"]) == "opencode"
    assert default_profile(["python3", "-m", "tests.doubles.tdd_agent"]) == "generic"
