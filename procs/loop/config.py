"""The loop's settings, from the `[loop]` table of a TOML file (factory.toml), checked once.

    [loop]
    agent_command = ["opencode", "acp", "--pure"]   # the ACP agent every role runs
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
    [loop.model]                                     # optional: where agents' models are
    kind = "openai"                                  # "openai" (compatible) or "anthropic"
    base_url = "http://127.0.0.1:8080/v1"

The reviewer changes nothing and only reports, so by default it is one call to the LLM
router's `reviewer` role (procs/loop/reviewer.py: Anthropic, budgeted and counted);
"agent" runs it as an agent turn that may write nothing, for a box with no router.

Every error names the key and the value (LoopConfigError). Unknown keys are errors, so a
typo is never a silent default. The model upstream is parsed and checked here; writing
it into the agent's config (opencode.json) is the gateway's step.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs.loop.state import LoopLimits

DEFAULT_AGENT = ("opencode", "acp", "--pure")
MODEL_KINDS = ("openai", "anthropic")
REVIEWERS = ("router", "agent")
_LIMITS = ("max_impl_attempts", "refactor_interval", "max_red_attempts", "max_iterations")
_KEYS = frozenset({"agent_command", "test_command", "language", "sandbox", "suite_timeout_s",
                   "turn_timeout_s", "model", "reviewer", *_LIMITS})  # fmt: skip


class LoopConfigError(ValueError):
    """A bad [loop] setting; the message names the key and what was wrong."""


@dataclass(frozen=True)
class ModelUpstream:
    kind: str
    base_url: str


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


def config_from(table: dict[str, Any]) -> RunnerConfig:
    """Check a [loop] table (already parsed)."""
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
    return RunnerConfig(
        test_command=_argv(table, "test_command"),
        agent_command=_argv(table, "agent_command") if "agent_command" in table
        else DEFAULT_AGENT,
        language=language, sandbox=sandbox,
        suite_timeout_s=_seconds(table, "suite_timeout_s", 300.0),
        turn_timeout_s=_seconds(table, "turn_timeout_s", 600.0),
        limits=limits, model=_model(table.get("model")), reviewer=reviewer,
    )  # fmt: skip


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
    if not isinstance(value, dict) or set(value) != {"kind", "base_url"}:
        raise LoopConfigError(f"[loop.model] needs exactly kind and base_url, got {value!r}")
    kind, url = value["kind"], value["base_url"]
    if kind not in MODEL_KINDS:
        raise LoopConfigError(f"[loop.model] kind must be one of {MODEL_KINDS}, got {kind!r}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise LoopConfigError(f"[loop.model] base_url must be an http(s) URL, got {url!r}")
    return ModelUpstream(kind=kind, base_url=url)
