"""The agent's model: where its model calls go, written the way each agent reads it.

The loop hands the agent service a model endpoint (`--model-url URL --model NAME
--model-api openai|responses|anthropic|gemini`) and the key in the environment
(MODEL_TOKEN_ENV, never on argv: argv is world-readable in /proc). How the agent reads
it is its profile's business (procs.agent.profiles, profiles.toml):

- every profile but generic: a private HOME (0700, under $TMPDIR, never inside the
  workspace) holding the profile's config files (0600, e.g. Codex's config.toml with a
  [model_providers] base_url), and an environment of the profile's variables plus HOME,
  the XDG dirs, PATH, LANG and TMPDIR only (ours is not passed on). The key is in the
  environment (the profile's {model_key}), never in a file; but opencode keeps it in
  its opencode.json (procs.agent.opencode), its only config. The HOME is removed when
  the service exits (a SIGKILLed service leaves it in $TMPDIR: it holds the agent's
  session store).
- "generic": our environment plus OPENAI_BASE_URL / OPENAI_API_KEY, ANTHROPIC_BASE_URL
  / ANTHROPIC_API_KEY, FACTORY_MODEL_URL and FACTORY_MODEL_NAME, for agents that read
  those.

The profile defaults to the one whose `match` names the command's basename, else
generic. Without a model URL the agent runs in our environment, configured by whoever
set it up.
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
from procs.agent.profiles import (
    MODEL_APIS,
    AgentProfile,
    ProfileError,
    expand,
    load_profiles,
    profile_for,
)

MODEL_TOKEN_ENV = "FACTORY_MODEL_TOKEN"
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


def default_profile(command: Sequence[str], profiles_file: Path | None = None) -> str:
    """The name of the profile whose `match` names the command's basename, else
    "generic" (procs.agent.profiles.profile_for)."""
    return profile_for(command, load_profiles(profiles_file)).name


def resolve(profile: str | AgentProfile, profiles_file: Path | None = None) -> AgentProfile:
    """The profile named `profile` (built-in or the operator's); raises ModelSetupError."""
    if isinstance(profile, AgentProfile):
        return profile
    try:
        profiles = load_profiles(profiles_file)
    except (ProfileError, OSError) as exc:
        raise ModelSetupError(f"agent profiles: {exc}") from None
    if profile not in profiles:
        raise ModelSetupError(f"unknown agent profile {profile!r}; known: {sorted(profiles)}")
    return profiles[profile]


def check(profile: str | AgentProfile, model: AgentModel) -> None:
    """Raises ModelSetupError for a combination this kind cannot configure."""
    kind = resolve(profile)
    if model.api not in MODEL_APIS:
        raise ModelSetupError(f"unknown model api {model.api!r}; known: {MODEL_APIS}")
    if not model.url.startswith(("http://", "https://")):
        raise ModelSetupError(f"the model URL must be http(s), got {model.url!r}")
    for what, value in (("URL", model.url), ("model name", model.name)):
        if any(c in value for c in "\"'\n\r{}"):
            raise ModelSetupError(f"the model {what} {value!r} has a quote, brace or newline")
    if not kind.speaks(model.api):
        raise ModelSetupError(
            f"the {kind.name} profile speaks {kind.model_api}; a --model-api {model.api} "
            "endpoint does not serve it"
        )


@contextlib.contextmanager
def agent_environment(
    profile: str | AgentProfile, model: AgentModel | None, workspace: Path,
    base_env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, str] | None]:  # fmt: skip
    """The agent's environment for `model` (None: ours, unchanged), its private HOME
    removed on exit. Raises ModelSetupError (a bad combination, $TMPDIR inside the
    workspace) before it writes anything; OSError when the HOME cannot be made."""
    base = dict(os.environ if base_env is None else base_env)
    if model is None:
        yield None
        return
    kind = resolve(profile)
    check(kind, model)
    values = {"model_url": model.url, "model_name": model.name, "model_key": model.key}
    if kind.inherit_env:
        yield base | {k: expand(v, values) for k, v in kind.env.items()}
        return
    temp = Path(tempfile.gettempdir()).resolve()
    if temp.is_relative_to(workspace.resolve()):
        raise ModelSetupError(f"$TMPDIR {temp} is inside the workspace; the agent's HOME "
                              "(its key, its state) must not be")  # fmt: skip
    home = Path(tempfile.mkdtemp(prefix="factory-agent-home-"))  # 0700
    try:
        if kind.name == "opencode":
            config = opencode_config(model.url, model.name, api_key=model.key)
            config_file = _write_private(home / "opencode.json", json.dumps(config, indent=2))
            yield opencode_env(home, config_file) | _expanded(kind.env, values, home)
            return
        for relative, template in kind.files.items():
            _write_private(home / relative, expand(template, values | {"home": str(home)}))
        yield isolated_env(home) | _expanded(kind.env, values, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def isolated_env(home: Path) -> dict[str, str]:
    """HOME and the XDG dirs under `home`, and our PATH, LANG and TMPDIR: nothing else of
    our environment reaches the agent."""
    env = {
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }  # fmt: skip
    for key in ("LANG", "TMPDIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _expanded(env: Mapping[str, str], values: Mapping[str, str], home: Path) -> dict[str, str]:
    return {k: expand(v, {**values, "home": str(home)}) for k, v in env.items()}


def _write_private(path: Path, text: str) -> Path:
    """Write a new file 0600 (its directories 0700) under the private HOME."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
