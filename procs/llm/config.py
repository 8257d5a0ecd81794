"""Router config: which endpoint serves each role, and how each endpoint is reached.

Data checked once at the edge (the TOML file, or a dict in tests); every error names the
offending key. Example:

    daily_budget_usd = 20.0            # all roles together, optional
    [role_budget_usd]                  # optional per-role caps
    reviewer = 10.0
    [roles]
    auditor = "local"
    implementer = "local"
    architect = "local"
    reviewer = "anthropic"              # the defaults: see default_config()
    [endpoints.local]
    kind = "llama_cpp"                 # or "anthropic"
    base_url = "http://127.0.0.1:8080"
    gpu_ticket = true                  # hold a GPU ticket during the call
    timeout_s = 120.0                  # per attempt
    retries = 2                        # extra attempts on retryable failures
    backoff_s = 0.5                    # first pause, doubled each retry (+ jitter)
    failure_threshold = 5              # consecutive failures that open the circuit
    reset_after_s = 10.0               # open -> half-open after this
    [endpoints.anthropic]
    kind = "anthropic"
    model = "claude-sonnet-4-5"
    api_key_env = "ANTHROPIC_API_KEY"
    input_per_mtok = 3.0               # USD per million tokens
    output_per_mtok = 15.0
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs.llm.budget import DailyBudget, Prices

KINDS = ("llama_cpp", "anthropic")


class RouterConfigError(ValueError):
    """The router config is malformed; the message names the key."""


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    kind: str
    base_url: str | None = None
    model: str = ""
    api_key_env: str = "ANTHROPIC_API_KEY"
    gpu_ticket: bool = False
    timeout_s: float = 120.0
    retries: int = 2
    backoff_s: float = 0.5
    failure_threshold: int = 5
    reset_after_s: float = 10.0
    prices: Prices = field(default_factory=Prices)


@dataclass(frozen=True)
class RouterConfig:
    roles: dict[str, str]
    endpoints: dict[str, EndpointSpec]
    budget: DailyBudget = field(default_factory=DailyBudget)
    gpu_tickets: int = 1

    @classmethod
    def from_dict(cls, raw: Any) -> RouterConfig:
        if not isinstance(raw, dict):
            raise RouterConfigError("router config must be a table")
        known = {"roles", "endpoints", "daily_budget_usd", "role_budget_usd", "gpu_tickets"}
        if unknown := set(raw) - known:
            raise RouterConfigError(f"router config: unknown keys {sorted(unknown)}")
        endpoints_raw = _table(raw.get("endpoints"), "endpoints")
        endpoints = {name: _endpoint(name, spec) for name, spec in endpoints_raw.items()}
        roles = _table(raw.get("roles"), "roles")
        for role, target in roles.items():
            if target not in endpoints:
                raise RouterConfigError(
                    f"roles.{role} = {target!r} names no endpoint (have {sorted(endpoints)})"
                )
        per_role = _table(raw.get("role_budget_usd", {}), "role_budget_usd")
        budget = DailyBudget(
            total_usd=_opt_number(raw.get("daily_budget_usd"), "daily_budget_usd"),
            per_role_usd={
                k: _number(v, f"role_budget_usd.{k}", minimum=0.0) for k, v in per_role.items()
            },
        )
        tickets = raw.get("gpu_tickets", 1)
        if isinstance(tickets, bool) or not isinstance(tickets, int) or tickets < 1:
            raise RouterConfigError(f"gpu_tickets must be an integer >= 1, got {tickets!r}")
        return cls(roles=dict(roles), endpoints=endpoints, budget=budget, gpu_tickets=tickets)

    @classmethod
    def from_file(cls, path: Path) -> RouterConfig:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RouterConfigError(f"cannot read router config {path}: {exc}") from exc
        return cls.from_dict(raw)


def default_config() -> RouterConfig:
    """The seed's routes: llama.cpp for the agents' roles (fs-052); Anthropic for the
    reviewer and the gauntlet's judge (haiku, fs-140, fs-165) and for the architectural
    review of big changes (opus, fs-167)."""
    return RouterConfig.from_dict(
        {
            "roles": {
                "auditor": "local",
                "implementer": "local",
                "architect": "local",
                "reviewer": "anthropic_fast",
                "judge": "anthropic_fast",
                "mutator": "local",  # the synapse's swarm: surgical fixes of a red golden
                "architectural_review": "anthropic_strong",
            },
            "endpoints": {
                "local": {"kind": "llama_cpp", "gpu_ticket": True},
                "anthropic_fast": {
                    "kind": "anthropic",
                    "model": "claude-haiku-4-5",
                    "input_per_mtok": 1.0,
                    "output_per_mtok": 5.0,
                },
                "anthropic_strong": {
                    "kind": "anthropic",
                    "model": "claude-opus-4-5",
                    "input_per_mtok": 5.0,
                    "output_per_mtok": 25.0,
                },
            },
        }
    )


def _endpoint(name: str, raw: Any) -> EndpointSpec:
    where = f"endpoints.{name}"
    spec = _table(raw, where)
    known = {
        "kind", "base_url", "model", "api_key_env", "gpu_ticket", "timeout_s", "retries",
        "backoff_s", "failure_threshold", "reset_after_s", "input_per_mtok", "output_per_mtok",
    }  # fmt: skip
    if unknown := set(spec) - known:
        raise RouterConfigError(f"{where}: unknown keys {sorted(unknown)}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise RouterConfigError(f"{where}.kind must be one of {KINDS}, got {kind!r}")
    retries = spec.get("retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise RouterConfigError(f"{where}.retries must be an integer >= 0, got {retries!r}")
    threshold = spec.get("failure_threshold", 5)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise RouterConfigError(f"{where}.failure_threshold must be >= 1, got {threshold!r}")
    for key in ("base_url", "model", "api_key_env"):
        if key in spec and not isinstance(spec[key], str):
            raise RouterConfigError(f"{where}.{key} must be a string")
    if not isinstance(spec.get("gpu_ticket", False), bool):
        raise RouterConfigError(f"{where}.gpu_ticket must be true or false")
    return EndpointSpec(
        name=name,
        kind=kind,
        base_url=spec.get("base_url"),
        model=spec.get("model", ""),
        api_key_env=spec.get("api_key_env", "ANTHROPIC_API_KEY"),
        gpu_ticket=spec.get("gpu_ticket", False),
        timeout_s=_number(spec.get("timeout_s", 120.0), f"{where}.timeout_s", minimum=1e-3),
        retries=retries,
        backoff_s=_number(spec.get("backoff_s", 0.5), f"{where}.backoff_s", minimum=0.0),
        failure_threshold=threshold,
        reset_after_s=_number(
            spec.get("reset_after_s", 10.0), f"{where}.reset_after_s", minimum=1e-3
        ),
        prices=Prices(
            input_per_mtok=_number(spec.get("input_per_mtok", 0.0), f"{where}.input_per_mtok"),
            output_per_mtok=_number(spec.get("output_per_mtok", 0.0), f"{where}.output_per_mtok"),
        ),
    )


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RouterConfigError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _number(value: Any, where: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise RouterConfigError(f"{where} must be a number >= {minimum}, got {value!r}")
    return float(value)


def _opt_number(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)
