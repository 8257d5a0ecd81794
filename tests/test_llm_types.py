"""LLMRequest / LLMResponse codecs and the router config: bad input names what is wrong."""

from __future__ import annotations

import pytest

from procs.llm.config import RouterConfig, RouterConfigError, default_config
from procs.llm.types import LLMRequest, LLMRequestInvalid, LLMResponse, Usage


def test_request_round_trips_through_json() -> None:
    request = LLMRequest(model="m", prompt="hello", max_tokens=12, temperature=0.5)
    assert LLMRequest.from_json(request.to_json()) == request


def test_response_round_trips_through_json() -> None:
    response = LLMResponse("text", Usage(3, 4), endpoint="local", model="x", stop_reason="eos")
    decoded = LLMResponse.from_json(response.to_json())
    assert decoded == response
    assert decoded.usage.total_tokens == 7


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"[1]", "must be a JSON object"),
        (b"{not json", "not valid JSON"),
        (b'{"model": "m"}', "missing field 'prompt'"),
        (b'{"model": "m", "prompt": 3}', "prompt must be a str"),
        (b'{"model": "m", "prompt": "p", "max_tokens": 0}', "max_tokens must be positive"),
        (b'{"model": "m", "prompt": "p", "max_tokens": true}', "max_tokens must be an integer"),
        (b'{"model": "m", "prompt": "p", "temperature": 9}', "temperature must be within"),
        (b'{"model": "m", "prompt": "p", "seed": 1}', "unknown fields ['seed']"),
    ],
)
def test_bad_request_names_the_problem(raw: bytes, fragment: str) -> None:
    with pytest.raises(LLMRequestInvalid, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        LLMRequest.from_json(raw)


def test_bad_response_usage_is_refused() -> None:
    with pytest.raises(LLMRequestInvalid, match=r"usage\.output_tokens"):
        LLMResponse.from_dict({"content": "x", "usage": {"output_tokens": -1}})


def test_default_routes_follow_the_seed() -> None:
    config = default_config()
    assert config.roles["auditor"] == "local"
    assert config.endpoints["local"].gpu_ticket is True
    fast = config.endpoints[config.roles["reviewer"]]
    strong = config.endpoints[config.roles["architectural_review"]]
    assert config.roles["judge"] == config.roles["reviewer"]
    assert (fast.kind, fast.model) == ("anthropic", "claude-haiku-4-5")  # fs-140, fs-165
    assert (strong.kind, strong.model) == ("anthropic", "claude-opus-4-5")  # fs-167


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"roles": {"a": "nowhere"}, "endpoints": {}}, "roles.a = 'nowhere' names no endpoint"),
        ({"roles": {}, "endpoints": {"e": {"kind": "gpt"}}}, "endpoints.e.kind must be one of"),
        ({"roles": {}, "endpoints": {"e": {"kind": "llama_cpp", "retries": -1}}}, "retries"),
        ({"roles": {}, "endpoints": {"e": {"kind": "llama_cpp", "colour": 1}}}, "colour"),
        ({"roles": {}, "endpoints": {}, "gpu_tickets": 0}, "gpu_tickets"),
        ({"roles": [], "endpoints": {}}, "roles must be a table"),
    ],
)
def test_bad_config_names_the_key(raw: dict, fragment: str) -> None:
    with pytest.raises(RouterConfigError, match=fragment.replace("[", r"\[")):
        RouterConfig.from_dict(raw)
