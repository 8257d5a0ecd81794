"""LLMRequest / LLMResponse: what a role asks a model, and what comes back, with JSON codecs.

The codecs are strict at the edge: `from_json` names the field that is missing or has the
wrong type, so a bad request from another process fails before any endpoint is called.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


class LLMRequestInvalid(ValueError):
    """A request or response document does not have the expected shape."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class LLMRequest:
    """One completion request. `model` may be "" to use the endpoint's configured model."""

    model: str
    prompt: str
    max_tokens: int = 512
    temperature: float = 0.0

    def __post_init__(self) -> None:
        _check_type(self.model, str, "model")
        _check_type(self.prompt, str, "prompt")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise LLMRequestInvalid(f"max_tokens must be an integer, got {self.max_tokens!r}")
        if self.max_tokens <= 0:
            raise LLMRequestInvalid(f"max_tokens must be positive, got {self.max_tokens}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
            raise LLMRequestInvalid(f"temperature must be a number, got {self.temperature!r}")
        if not math.isfinite(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            raise LLMRequestInvalid(f"temperature must be within [0, 2], got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> LLMRequest:
        if not isinstance(obj, dict):
            raise LLMRequestInvalid(f"LLMRequest must be a JSON object, got {type(obj).__name__}")
        unknown = set(obj) - {"model", "prompt", "max_tokens", "temperature"}
        if unknown:
            raise LLMRequestInvalid(f"LLMRequest has unknown fields {sorted(unknown)}")
        for name in ("model", "prompt"):
            if name not in obj:
                raise LLMRequestInvalid(f"LLMRequest is missing field {name!r}")
        return cls(**obj)

    @classmethod
    def from_json(cls, data: bytes | str) -> LLMRequest:
        return cls.from_dict(_loads(data, "LLMRequest"))


@dataclass(frozen=True)
class LLMResponse:
    """The model's text plus token usage; `endpoint` and `model` say who answered."""

    content: str
    usage: Usage = field(default_factory=Usage)
    endpoint: str = ""
    model: str = ""
    stop_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> LLMResponse:
        if not isinstance(obj, dict):
            raise LLMRequestInvalid(f"LLMResponse must be a JSON object, got {type(obj).__name__}")
        if not isinstance(obj.get("content"), str):
            raise LLMRequestInvalid("LLMResponse.content must be a string")
        raw_usage = obj.get("usage") or {}
        if not isinstance(raw_usage, dict):
            raise LLMRequestInvalid("LLMResponse.usage must be an object")
        usage = Usage(
            input_tokens=_int_field(raw_usage, "input_tokens"),
            output_tokens=_int_field(raw_usage, "output_tokens"),
        )
        return cls(
            content=obj["content"],
            usage=usage,
            endpoint=str(obj.get("endpoint", "")),
            model=str(obj.get("model", "")),
            stop_reason=str(obj.get("stop_reason", "")),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> LLMResponse:
        return cls.from_dict(_loads(data, "LLMResponse"))


def _loads(data: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LLMRequestInvalid(f"{what} is not valid JSON: {exc}") from exc


def _check_type(value: Any, kind: type, name: str) -> None:
    if not isinstance(value, kind):
        raise LLMRequestInvalid(f"{name} must be a {kind.__name__}, got {value!r:.80}")


def _int_field(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LLMRequestInvalid(f"usage.{name} must be a non-negative integer, got {value!r}")
    return value
