"""The agent's model: where its model calls go, written the way each agent reads it.

The loop hands the agent service a model endpoint (`--model-url URL --model NAME
--model-api openai|anthropic`) and the key in the environment (MODEL_TOKEN_ENV, never
on argv: argv is world-readable in /proc). The agent's own config is this kind's
business, by profile:

- "opencode": a private HOME (0700, under $TMPDIR, never inside the workspace) holding
  `opencode.json` (0600) whose only provider is the endpoint with the key as its apiKey,
  and the isolated environment of procs.agent.opencode (HOME, XDG dirs, OPENCODE_CONFIG,
  no downloads, no autoupdate). The key is only in that file. The HOME is removed when
  the service exits (a SIGKILLed service leaves it in $TMPDIR: it holds opencode's
  session store and the key of a token the loop revokes at its end).
- "generic": our environment plus OPENAI_BASE_URL / OPENAI_API_KEY (or ANTHROPIC_BASE_URL
  / ANTHROPIC_API_KEY), FACTORY_MODEL_URL and FACTORY_MODEL_NAME, for agents that read
  those.

The profile defaults to the command's basename ("opencode" -> opencode, else generic).
Without a model URL the agent runs in our environment, configured by whoever set it up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from procs.agent.opencode import opencode_config, opencode_env

MODEL_TOKEN_ENV = "FACTORY_MODEL_TOKEN"
PROFILES = ("opencode", "generic")
MODEL_APIS = ("openai", "anthropic")
NO_KEY = "unused"  # an OpenAI SDK refuses an empty key; a keyless upstream ignores it


class ModelSetupError(ValueError):
    """The model settings cannot be written for this agent; the message says why."""


@dataclass(frozen=True)
class AgentModel:
    """The endpoint the agent's model calls go to, and the key they carry."""

    url: str
    name: str
    api: str = "openai"
    key: str = field(default=NO_KEY, repr=False)


def default_profile(command: Sequence[str]) -> str:
    """The profile "opencode" when the command's basename is opencode, else "generic"."""
    return "opencode" if command and Path(command[0]).name == "opencode" else "generic"


def check(profile: str, model: AgentModel) -> None:
    """Raises ModelSetupError for a combination this kind cannot configure."""
    if profile not in PROFILES:
        raise ModelSetupError(f"unknown agent profile {profile!r}; known: {PROFILES}")
    if model.api not in MODEL_APIS:
        raise ModelSetupError(f"unknown model api {model.api!r}; known: {MODEL_APIS}")
    if not model.url.startswith(("http://", "https://")):
        raise ModelSetupError(f"the model URL must be http(s), got {model.url!r}")
    if profile == "opencode" and model.api != "openai":
        raise ModelSetupError("the opencode profile is configured for an OpenAI-compatible "
                              "model only (--model-api openai)")  # fmt: skip


@contextlib.contextmanager
def agent_environment(
    profile: str, model: AgentModel | None, workspace: Path,
    base_env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, str] | None]:  # fmt: skip
    """The agent's environment for `model` (None: ours, unchanged), its private HOME
    removed on exit. Raises ModelSetupError (a bad combination, $TMPDIR inside the
    workspace) before it writes anything; OSError when the HOME cannot be made."""
    env = dict(os.environ if base_env is None else base_env)
    if model is None:
        yield None
        return
    check(profile, model)
    if profile == "generic":
        prefix = "OPENAI" if model.api == "openai" else "ANTHROPIC"
        env.update({f"{prefix}_BASE_URL": model.url, f"{prefix}_API_KEY": model.key,
                    "FACTORY_MODEL_URL": model.url, "FACTORY_MODEL_NAME": model.name})  # fmt: skip
        yield env
        return
    temp = Path(tempfile.gettempdir()).resolve()
    if temp.is_relative_to(workspace.resolve()):
        raise ModelSetupError(f"$TMPDIR {temp} is inside the workspace; the agent's HOME "
                              "(its key, its state) must not be")  # fmt: skip
    home = Path(tempfile.mkdtemp(prefix="factory-agent-home-"))  # 0700
    try:
        config_file = home / "opencode.json"
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(opencode_config(model.url, model.name, api_key=model.key), f, indent=2)
        yield opencode_env(home, config_file)
    finally:
        shutil.rmtree(home, ignore_errors=True)
