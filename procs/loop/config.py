"""The loop's settings, from the `[loop]` table of a TOML file (factory.toml), checked once.

    [loop]
    agent = "opencode"                               # the agent's profile (see below)
    profiles_file = "/etc/factory/agents.toml"       # optional: the operator's profiles
    agent_command = ["opencode", "acp", "--pure"]    # optional: the profile's, else
    test_command = ["python3", "-m", "pytest", "-q"] # required: a pytest command line
    language = "Python"
    sandbox = "bwrap"                                # or "none" (the operator's choice)
    suite_timeout_s = 300
    turn_timeout_s = 600
    max_impl_attempts = 3
    refactor_interval = 3
    max_red_attempts = 3
    max_iterations = 50
    reviewer = "router"                              # or "agent": who reviews (see below)
    sandbox_agent = true                             # default with bwrap: see below
    budget_tokens = 2000000                          # optional: the bead's agent tokens
    [loop.model]                                     # optional: where agents' models are
    kind = "openai"                                  # "openai", "anthropic" or "gemini"
    base_url = "http://127.0.0.1:8080/v1"
    model = "qwen3-coder"                            # optional: its name (default "default")
    metered = true                                   # false: agents call base_url directly

The agent: `agent` names an ACP agent profile (procs/agent/profiles.toml: "opencode",
"claude", "codex", "gemini", "generic"; or one of the operator's `profiles_file`, whose
tables add kinds or replace built-ins whole). Its profile says how the agent is started
offline against its model (private HOME, config files, telemetry off), the session mode
every turn is pinned to, the model protocol it speaks and the RAM it takes; its command
is the agent's unless `agent_command` is given. Without `agent`, `agent_command`'s
basename picks the profile (as before), and without either the agent is opencode: the
default because it speaks OpenAI Chat Completions, which every local model server
(llama.cpp, vLLM, ollama) serves, and the factory's models are local by default; claude
needs an Anthropic Messages upstream, codex OpenAI Responses, gemini the Gemini API.
The profile is read when the config is (procs/loop/agent_profile.py asks procs.agent).

[loop.model] kind is the protocol family of the model server (the gateway's upstream
kind): "openai" (an OpenAI-compatible /v1: Chat Completions for opencode, Responses for
codex), "anthropic" (Messages: claude), "gemini" (the Gemini API: gemini). A kind that
cannot serve the agent's protocol is an error naming both.

The reviewer changes nothing and only reports, so by default it is one call to the LLM
router's `reviewer` role (procs/loop/reviewer.py: Anthropic, budgeted and counted);
"agent" runs it as an agent turn that may write nothing, for a box with no router.

Agents' model traffic (procs/loop/metering.py): with [loop.model], every agent turn's
model calls go through the model gateway, counted per bead and role, under the bead's
`budget_tokens` (none: uncounted but unlimited); the agent is handed the gateway's URL
and a token naming the bead, and writes its own config from them (the agent service's
--model-url). `metered = false` is the operator's explicit choice of no gateway: agents
call base_url directly and nothing is counted (a budget is then an error). Without
[loop.model] the agent's model is whatever its own config says, uncounted.

`sandbox_agent`: each role's agent process runs in bubblewrap (procs/agent/agent_sandbox:
the workspace read-write, the role's locked paths and the rest read-only; a network of
its own where only [loop.model]'s endpoint, the gateway, is reachable), one kept agent
per role. On by default whenever the sandbox is bwrap.

Every error names the key and the value (LoopConfigError). Unknown keys are errors, so a
typo is never a silent default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs.loop.agent_profile import AgentProfileInfo, ProfileLookupError, lookup
from procs.loop.state import LoopLimits

ProfileLookup = Callable[[str | None, Sequence[str], Path | None], AgentProfileInfo]

DEFAULT_AGENT = ("opencode", "acp", "--pure")
DEFAULT_PROFILE = "opencode"
DEFAULT_AGENT_RAM_MB = 800
MODEL_KINDS = ("openai", "anthropic", "gemini")
REVIEWERS = ("router", "agent")
_LIMITS = ("max_impl_attempts", "refactor_interval", "max_red_attempts", "max_iterations")
_KEYS = frozenset({"agent", "profiles_file", "agent_command", "test_command", "language",
                   "sandbox", "suite_timeout_s", "turn_timeout_s", "model", "reviewer",
                   "budget_tokens", "sandbox_agent",
                   *_LIMITS})  # fmt: skip
_MODEL_KEYS = frozenset({"kind", "base_url", "model", "metered"})
DEFAULT_MODEL_NAME = "default"


class LoopConfigError(ValueError):
    """A bad [loop] setting; the message names the key and what was wrong."""


@dataclass(frozen=True)
class ModelUpstream:
    """[loop.model]: the model server, its model's name, and whether the gateway meters
    the agents' calls to it."""

    kind: str
    base_url: str
    name: str = DEFAULT_MODEL_NAME
    metered: bool = True


@dataclass(frozen=True)
class RunnerConfig:
    """The checked [loop] settings."""

    test_command: tuple[str, ...]
    agent_command: tuple[str, ...] = DEFAULT_AGENT
    language: str = "Python"
    sandbox: str = "bwrap"
    suite_timeout_s: float = 300.0
    turn_timeout_s: float = 600.0
    limits: LoopLimits = field(default_factory=LoopLimits)
    model: ModelUpstream | None = None
    reviewer: str = "router"
    budget_tokens: int | None = None
    sandbox_agent: bool = False
    agent: str | None = None  # the agent's profile (None: agent_command's basename picks)
    profiles_file: Path | None = None  # the operator's profiles, besides the built-ins
    agent_api: str = "openai"  # the protocol the agent speaks to [loop.model]
    agent_ram_mb: int = DEFAULT_AGENT_RAM_MB  # its profile's expected RSS


def load_config(path: Path | None) -> RunnerConfig:
    """The [loop] table of the TOML file at `path`; raises LoopConfigError (also for an
    unreadable file or a missing test_command)."""
    table: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise LoopConfigError(f"config {path}: {exc}") from None
        loop = document.get("loop", {})
        if not isinstance(loop, dict):
            raise LoopConfigError(f"config {path}: [loop] must be a table")
        table = loop
    return config_from(table)


def config_from(table: dict[str, Any], *, profiles: ProfileLookup = lookup) -> RunnerConfig:
    """Check a [loop] table (already parsed); `profiles` finds the agent's profile (by
    default procs.agent's, asked as a process: agent_profile.lookup)."""
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise LoopConfigError(f"[loop]: unknown key(s) {unknown}; known: {sorted(_KEYS)}")
    if "test_command" not in table:
        raise LoopConfigError("[loop] test_command is required (a pytest command line)")
    try:
        limits = LoopLimits(**{key: table[key] for key in _LIMITS if key in table})
    except ValueError as exc:
        raise LoopConfigError(f"[loop] {exc}") from None
    sandbox = table.get("sandbox", "bwrap")
    if sandbox not in ("bwrap", "none"):
        raise LoopConfigError(f'[loop] sandbox must be "bwrap" or "none", got {sandbox!r}')
    reviewer = table.get("reviewer", "router")
    if reviewer not in REVIEWERS:
        raise LoopConfigError(f"[loop] reviewer must be one of {REVIEWERS}, got {reviewer!r}")
    language = table.get("language", "Python")
    if not isinstance(language, str) or not language:
        raise LoopConfigError(f"[loop] language must be a non-empty string, got {language!r}")
    sandbox_agent = table.get("sandbox_agent", sandbox == "bwrap")
    if not isinstance(sandbox_agent, bool):
        raise LoopConfigError(f"[loop] sandbox_agent must be true or false, got {sandbox_agent!r}")
    if sandbox_agent and sandbox != "bwrap":
        raise LoopConfigError('[loop] sandbox_agent = true needs sandbox = "bwrap"')
    model = _model(table.get("model"))
    budget = table.get("budget_tokens")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise LoopConfigError(f"[loop] budget_tokens must be an integer >= 1, got {budget!r}")
        if model is None or not model.metered:
            raise LoopConfigError("[loop] budget_tokens needs a metered [loop.model] (the "
                                  "gateway counts the tokens)")  # fmt: skip
    test_command = _argv(table, "test_command")
    explicit = _argv(table, "agent_command") if "agent_command" in table else None
    profile = _profile(table, explicit, profiles)
    command = explicit or profile.command
    if not command:
        raise LoopConfigError(f"[loop] agent = {profile.name!r}: its profile names no "
                              "command; set [loop] agent_command")  # fmt: skip
    api = profile.model_api
    if model is not None:
        try:
            api = profile.api_for(model.kind)
        except ProfileLookupError as exc:
            raise LoopConfigError(f"[loop.model] {exc}") from None
    return RunnerConfig(
        test_command=test_command, agent_command=command, agent=profile.name,
        profiles_file=_profiles_file(table), agent_api=api,
        agent_ram_mb=profile.expected_rss_mb, language=language, sandbox=sandbox,
        suite_timeout_s=_seconds(table, "suite_timeout_s", 300.0),
        turn_timeout_s=_seconds(table, "turn_timeout_s", 600.0),
        limits=limits, model=model, reviewer=reviewer, budget_tokens=budget,
        sandbox_agent=sandbox_agent,
    )  # fmt: skip


def _profile(table: dict[str, Any], command: tuple[str, ...] | None,
             profiles: ProfileLookup) -> AgentProfileInfo:  # fmt: skip
    """[loop] agent's profile; else the one agent_command's basename picks; else the
    default's."""
    name = table.get("agent")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise LoopConfigError(f"[loop] agent must be a profile's name (a non-empty string), "
                              f"got {name!r}")  # fmt: skip
    if name is None and command is None:
        name = DEFAULT_PROFILE
    try:
        return profiles(name, command or (), _profiles_file(table))
    except ProfileLookupError as exc:
        raise LoopConfigError(f"[loop] {exc.key}: {exc}") from None


def _profiles_file(table: dict[str, Any]) -> Path | None:
    value = table.get("profiles_file")
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise LoopConfigError(f"[loop] profiles_file must be an absolute path, got {value!r}")
    return Path(value)


def _argv(table: dict[str, Any], key: str) -> tuple[str, ...]:
    value = table[key]
    if (not isinstance(value, list) or not value
            or not all(isinstance(part, str) and part for part in value)):  # fmt: skip
        raise LoopConfigError(f"[loop] {key} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def _seconds(table: dict[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise LoopConfigError(f"[loop] {key} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _model(value: object) -> ModelUpstream | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not {"kind", "base_url"} <= set(value) <= _MODEL_KEYS:
        raise LoopConfigError(f"[loop.model] needs kind and base_url (and may name model, "
                              f"metered), got {value!r}")  # fmt: skip
    kind, url = value["kind"], value["base_url"]
    name, metered = value.get("model", DEFAULT_MODEL_NAME), value.get("metered", True)
    if not isinstance(name, str) or not name:
        raise LoopConfigError(f"[loop.model] model must be a non-empty string, got {name!r}")
    if not isinstance(metered, bool):
        raise LoopConfigError(f"[loop.model] metered must be true or false, got {metered!r}")
    if kind not in MODEL_KINDS:
        raise LoopConfigError(f"[loop.model] kind must be one of {MODEL_KINDS}, got {kind!r}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise LoopConfigError(f"[loop.model] base_url must be an http(s) URL, got {url!r}")
    return ModelUpstream(kind=kind, base_url=url, name=name, metered=metered)
