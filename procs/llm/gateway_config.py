"""Model gateway config: where agents' model traffic goes, checked once at the edge.

One upstream per protocol kind; every error names the offending key. Example
(`procs.llm.gateway_service --config gateway.toml`):

    port = 0                    # 0: the port of the last run if free, else any free one
    max_body_bytes = 8388608    # larger request bodies get 413
    max_concurrent = 64         # requests served at once; more get 503
    gpu_tickets = 1             # flock slots when no governor ledger exists
    [upstreams.local]
    kind = "openai"             # OpenAI chat completions: llama.cpp, vLLM, ollama, ...
    base_url = "http://127.0.0.1:8080/v1"   # with the version path, as OpenAI SDKs take it
    gpu_ticket = true           # hold a GPU ticket for the whole call (stream included)
    api_key_env = ""            # optional: environment variable holding the upstream key
    timeout_s = 300.0           # longest wait for the next byte from the upstream
    max_call_s = 900.0          # a whole call, stream included
    ticket_wait_s = 120.0       # longest wait for a GPU ticket, then 503
    failure_threshold = 5       # consecutive failures that open the breaker
    reset_after_s = 10.0        # open -> half-open after this
    [upstreams.anthropic]
    kind = "anthropic"          # Anthropic Messages
    base_url = "https://api.anthropic.com"  # the host, as the Anthropic SDK takes it
    api_key_env = "ANTHROPIC_API_KEY"
    [upstreams.gemini]
    kind = "gemini"             # the Gemini API (v1beta), as Gemini CLI speaks it
    base_url = "https://generativelanguage.googleapis.com"  # the host, as @google/genai takes it
    api_key_env = "GEMINI_API_KEY"          # sent upstream as x-goog-api-key
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("openai", "anthropic", "gemini")
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class GatewayConfigError(ValueError):
    """The gateway config is malformed; the message names the key."""


@dataclass(frozen=True)
class UpstreamSpec:
    """One model server. The key is read from `api_key_env` at call time, never stored."""

    name: str
    kind: str
    base_url: str
    api_key_env: str = ""
    gpu_ticket: bool = False
    timeout_s: float = 300.0
    max_call_s: float = 900.0
    ticket_wait_s: float = 120.0
    failure_threshold: int = 5
    reset_after_s: float = 10.0


@dataclass(frozen=True)
class GatewayConfig:
    upstreams: dict[str, UpstreamSpec] = field(default_factory=dict)
    port: int = 0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_concurrent: int = 64
    gpu_tickets: int = 1

    def upstream_for(self, kind: str) -> UpstreamSpec | None:
        """The upstream serving protocol `kind` ("openai", "anthropic", "gemini"), if any."""
        return next((u for u in self.upstreams.values() if u.kind == kind), None)

    @classmethod
    def from_dict(cls, raw: Any) -> GatewayConfig:
        table = _table(raw, "gateway config")
        known = {"upstreams", "port", "max_body_bytes", "max_concurrent", "gpu_tickets"}
        if unknown := set(table) - known:
            raise GatewayConfigError(f"gateway config: unknown keys {sorted(unknown)}")
        ups = _table(table.get("upstreams", {}), "upstreams")
        upstreams = {name: _upstream(name, spec) for name, spec in ups.items()}
        for kind in KINDS:
            names = sorted(n for n, u in upstreams.items() if u.kind == kind)
            if len(names) > 1:
                raise GatewayConfigError(f"upstreams {names} are all of kind {kind!r}: keep one")
        port = _int(table.get("port", 0), "port", minimum=0)
        if port > 65535:
            raise GatewayConfigError(f"port must be <= 65535, got {port}")
        return cls(
            upstreams=upstreams,
            port=port,
            max_body_bytes=_int(
                table.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES), "max_body_bytes", minimum=1
            ),
            max_concurrent=_int(table.get("max_concurrent", 64), "max_concurrent", minimum=1),
            gpu_tickets=_int(table.get("gpu_tickets", 1), "gpu_tickets", minimum=1),
        )

    @classmethod
    def from_file(cls, path: Path) -> GatewayConfig:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GatewayConfigError(f"cannot read gateway config {path}: {exc}") from exc
        return cls.from_dict(raw)


def _upstream(name: str, raw: Any) -> UpstreamSpec:
    where = f"upstreams.{name}"
    spec = _table(raw, where)
    known = {
        "kind",
        "base_url",
        "api_key_env",
        "gpu_ticket",
        "timeout_s",
        "max_call_s",
        "ticket_wait_s",
        "failure_threshold",
        "reset_after_s",
    }
    if unknown := set(spec) - known:
        raise GatewayConfigError(f"{where}: unknown keys {sorted(unknown)}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise GatewayConfigError(f"{where}.kind must be one of {KINDS}, got {kind!r}")
    base_url = spec.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise GatewayConfigError(f"{where}.base_url must be an http(s) URL, got {base_url!r}")
    key_env = spec.get("api_key_env", DEFAULT_KEY_ENV.get(kind, ""))
    if not isinstance(key_env, str):
        raise GatewayConfigError(f"{where}.api_key_env must be a string")
    if not isinstance(spec.get("gpu_ticket", False), bool):
        raise GatewayConfigError(f"{where}.gpu_ticket must be true or false")
    return UpstreamSpec(
        name=name,
        kind=kind,
        base_url=base_url.rstrip("/"),
        api_key_env=key_env,
        gpu_ticket=spec.get("gpu_ticket", False),
        timeout_s=_number(spec.get("timeout_s", 300.0), f"{where}.timeout_s"),
        max_call_s=_number(spec.get("max_call_s", 900.0), f"{where}.max_call_s"),
        ticket_wait_s=_number(spec.get("ticket_wait_s", 120.0), f"{where}.ticket_wait_s"),
        failure_threshold=_int(
            spec.get("failure_threshold", 5), f"{where}.failure_threshold", minimum=1
        ),
        reset_after_s=_number(spec.get("reset_after_s", 10.0), f"{where}.reset_after_s"),
    )


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GatewayConfigError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise GatewayConfigError(f"{where} must be a number > 0, got {value!r}")
    return float(value)


def _int(value: Any, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GatewayConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value
