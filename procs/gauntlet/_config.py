"""The gauntlet's settings, checked once: where they come from and what they mean.

Two sources, later wins:
  1. the project's `[tool.factory.gauntlet]` in pyproject.toml AS IT IS AT REV (git show
     REV:pyproject.toml): a change never configures the judge of itself;
  2. the operator's file given with --config (factory.toml), its `[gauntlet]` table.

    [gauntlet]
    unit_command = ["python3", "-m", "pytest", "-q"]        # the default
    integration_command = ["python3", "-m", "pytest", "-q", "-m", "integration"]  # else skipped
    lint_command = ["ruff", "check", "--no-cache", "--output-format=concise"]  # + files
    timeout_s = 300            # each stage that runs code, in the sandbox
    memory_mb = 4096
    sandbox = "bwrap"          # or "none" (the operator's choice; default $FACTORY_SANDBOX)
    skip = {integration = "no integration suite yet"}       # stage -> reason
    judge_role = "judge"       # the router's role for llm_judge
    review_role = "architectural_review"  # the router's role for it (a stronger model)
    router_socket = "/run/factory/llm_router.sock"          # default: <runtime_dir>/...
    llm_timeout_s = 120
    review_min_lines = 100     # architectural_review runs above this many changed lines
    requirements = ""          # what the change must build (the CLI's --requirements)

Unknown keys are errors (GauntletConfigError names them), so a typo is never a default.
"""

from __future__ import annotations

import math
import os
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGE_NAMES = (
    "compile", "unit", "integration", "lint", "cheat_detection", "llm_judge",
    "architectural_review",
)  # fmt: skip
DEFAULT_UNIT = ("python3", "-m", "pytest", "-q")
DEFAULT_LINT = ("ruff", "check", "--no-cache", "--output-format=concise")
_KEYS = frozenset({
    "unit_command", "integration_command", "lint_command", "timeout_s", "memory_mb", "sandbox",
    "skip", "judge_role", "review_role", "router_socket", "llm_timeout_s", "review_min_lines",
    "requirements",
})  # fmt: skip


class GauntletConfigError(ValueError):
    """A bad gauntlet setting; the message names the key, the value and the source."""


@dataclass(frozen=True)
class GauntletConfig:
    unit_command: tuple[str, ...] = DEFAULT_UNIT
    integration_command: tuple[str, ...] | None = None
    lint_command: tuple[str, ...] = DEFAULT_LINT
    timeout_s: float = 300.0
    memory_mb: int = 4096
    sandbox: str = field(default_factory=lambda: os.environ.get("FACTORY_SANDBOX") or "bwrap")
    skip: dict[str, str] = field(default_factory=dict)
    judge_role: str = "judge"
    review_role: str = "architectural_review"
    router_socket: Path | None = None
    llm_timeout_s: float = 120.0
    review_min_lines: int = 100
    requirements: str = ""


def from_table(table: dict[str, Any], where: str, base: GauntletConfig | None = None
               ) -> GauntletConfig:  # fmt: skip
    """`base` (default: the defaults) with the keys of a [gauntlet] table over it."""
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise GauntletConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_KEYS)}")
    values: dict[str, Any] = dict(vars(base or GauntletConfig()))
    for key, value in table.items():
        if key in ("unit_command", "lint_command", "integration_command"):
            values[key] = _argv(value, f"{where} {key}")
        elif key in ("timeout_s", "llm_timeout_s"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise GauntletConfigError(f"{where} {key} must be seconds > 0, got {value!r}")
            values[key] = math.inf if value == math.inf else float(value)
        elif key in ("memory_mb", "review_min_lines"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise GauntletConfigError(f"{where} {key} must be an integer >= 0, got {value!r}")
            values[key] = value
        elif key == "sandbox":
            if value not in ("bwrap", "none"):
                raise GauntletConfigError(f'{where} sandbox must be "bwrap" or "none", '
                                          f"got {value!r}")  # fmt: skip
            values[key] = value
        elif key == "skip":
            values[key] = {**values["skip"], **_skips(value, where)}
        elif key == "router_socket":
            if not isinstance(value, str) or not value:
                raise GauntletConfigError(f"{where} router_socket must be a path, got {value!r}")
            values[key] = Path(value)
        elif not isinstance(value, str) or (key.endswith("_role") and not value):
            raise GauntletConfigError(f"{where} {key} must be a string, got {value!r}")
        else:
            values[key] = value
    return GauntletConfig(**values)


def load(workspace: Path, base: str, config_file: Path | None = None) -> GauntletConfig:
    """The project's settings at `base`, then the operator's file over them."""
    config = GauntletConfig()
    project = _pyproject_at(workspace, base)
    if project is not None:
        table = project.get("tool", {}).get("factory", {}).get("gauntlet")
        if table is not None:
            if not isinstance(table, dict):
                raise GauntletConfigError("pyproject.toml at REV: [tool.factory.gauntlet] "
                                          "must be a table")  # fmt: skip
            config = from_table(table, "pyproject.toml at REV [tool.factory.gauntlet]", config)
    if config_file is not None:
        try:
            document = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise GauntletConfigError(f"config {config_file}: {exc}") from None
        table = document.get("gauntlet", {})
        if not isinstance(table, dict):
            raise GauntletConfigError(f"config {config_file}: [gauntlet] must be a table")
        config = from_table(table, f"{config_file} [gauntlet]", config)
    return config


def _pyproject_at(workspace: Path, base: str) -> dict[str, Any] | None:
    try:
        done = subprocess.run(
            ["git", "show", f"{base}:pyproject.toml"], cwd=workspace, capture_output=True,
            timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GauntletConfigError(f"cannot read pyproject.toml at {base}: {exc}") from None
    if done.returncode != 0:
        return None  # no pyproject.toml at REV
    try:
        return tomllib.loads(done.stdout.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GauntletConfigError(f"pyproject.toml at REV is not valid TOML: {exc}") from None


def _argv(value: object, where: str) -> tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(part, str) and part for part in value)):  # fmt: skip
        raise GauntletConfigError(f"{where} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def _skips(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise GauntletConfigError(f"{where} skip must be a table of stage = reason")
    for stage, reason in value.items():
        if stage not in STAGE_NAMES:
            raise GauntletConfigError(f"{where} skip: unknown stage {stage!r}; "
                                      f"stages: {list(STAGE_NAMES)}")  # fmt: skip
        if not isinstance(reason, str) or not reason.strip():
            raise GauntletConfigError(f"{where} skip.{stage} needs a reason (a string)")
    return dict(value)
