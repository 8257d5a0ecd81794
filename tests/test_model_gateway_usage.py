"""The gateway's pure parts: usage read from each protocol's answers and streams (events
cut anywhere across reads), request checks, and the config's errors naming the key."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from procs.llm.gateway_config import GatewayConfig, GatewayConfigError
from procs.llm.gateway_store import CallUsage
from procs.llm.gateway_usage import (
    BadRequestBody,
    SseSplitter,
    StreamMeter,
    ask_openai_usage,
    body_usage,
    event_data,
    parse_request,
)


def sse(obj: object, event: str | None = None, newline: str = "\n") -> bytes:
    text = obj if isinstance(obj, str) else orjson.dumps(obj).decode()
    head = f"event: {event}{newline}" if event else ""
    return f"{head}data: {text}{newline}{newline}".encode()


ANTHROPIC_STREAM = b"".join(
    [
        sse(
            {
                "type": "message_start",
                "message": {
                    "usage": {
                        "input_tokens": 40,
                        "output_tokens": 1,
                        "cache_read_input_tokens": 7,
                        "cache_creation_input_tokens": 3,
                    }
                },
            },
            "message_start",
        ),
        sse({"type": "content_block_delta", "delta": {"text": 'the "usage" word'}}, "x"),
        sse({"type": "message_delta", "usage": {"output_tokens": 12}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
)
OPENAI_STREAM = b"".join(
    [
        sse({"choices": [{"delta": {"content": "a"}}], "usage": None}, newline="\r\n"),
        sse({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}}),
        sse("[DONE]"),
    ]
)


def run_meter(meter: StreamMeter, stream: bytes, cuts: list[int]) -> bytes:
    splitter, kept, at = SseSplitter(), b"", 0
    for cut in [*sorted(cuts), len(stream)]:
        kept += b"".join(e for e in splitter.feed(stream[at:cut]) if meter.keep(e))
        at = max(at, cut)
    return kept + splitter.rest()


@given(st.lists(st.integers(0, len(ANTHROPIC_STREAM)), max_size=8))
def test_anthropic_stream_usage_whatever_the_reads(cuts: list[int]) -> None:
    meter = StreamMeter("anthropic")
    assert run_meter(meter, ANTHROPIC_STREAM, cuts) == ANTHROPIC_STREAM
    assert meter.usage == CallUsage(input_tokens=40, output_tokens=12, cached_tokens=10)
    assert meter.done


@given(st.lists(st.integers(0, len(OPENAI_STREAM)), max_size=8))
def test_openai_stream_usage_and_the_hidden_usage_chunk(cuts: list[int]) -> None:
    shown = StreamMeter("openai")
    assert run_meter(shown, OPENAI_STREAM, cuts) == OPENAI_STREAM
    hidden = StreamMeter("openai", hide_usage_chunk=True)
    kept = run_meter(hidden, OPENAI_STREAM, cuts)
    assert b"prompt_tokens" not in kept and kept.endswith(b"data: [DONE]\n\n")
    for meter in (shown, hidden):
        assert meter.usage == CallUsage(input_tokens=11, output_tokens=4)
        assert meter.done


def test_responses_stream_usage_comes_with_the_completed_event() -> None:
    meter = StreamMeter("responses")
    created = sse({"type": "response.created", "response": {"usage": None}}, "response.created")
    assert meter.keep(created) and meter.usage is None and not meter.done
    completed = {"type": "response.completed",
                 "response": {"usage": {"input_tokens": 8, "output_tokens": 3}}}  # fmt: skip
    assert meter.keep(sse(completed, "response.completed"))
    assert meter.usage == CallUsage(8, 3) and meter.done
    assert body_usage("responses", orjson.dumps(completed["response"])) == CallUsage(8, 3)


def test_whole_answers_usage() -> None:
    openai = orjson.dumps({"usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    assert body_usage("openai", openai) == CallUsage(5, 2)
    anthropic = orjson.dumps({"usage": {"input_tokens": 9, "output_tokens": 1,
                                        "cache_read_input_tokens": 4}})  # fmt: skip
    assert body_usage("anthropic", anthropic) == CallUsage(9, 1, 4)
    assert body_usage("openai", b"not json") is None
    assert body_usage("openai", b'{"usage": {"prompt_tokens": "x"}}') == CallUsage(0, 0)


def test_event_data_joins_data_lines() -> None:
    assert event_data(b"event: e\ndata: a\ndata:b\n\n") == b"a\nb"


def test_stream_options_are_added_only_when_missing() -> None:
    asked = {"messages": [], "stream": True, "stream_options": {"include_usage": True}}
    assert ask_openai_usage(asked) is None
    assert ask_openai_usage({"messages": [], "stream": False}) is None
    added = ask_openai_usage({"messages": [], "stream": True, "stream_options": {"x": 1}})
    assert added is not None and added["stream_options"] == {"x": 1, "include_usage": True}


def test_request_checks() -> None:
    assert parse_request("openai", b'{"messages": []}') == {"messages": []}
    with pytest.raises(BadRequestBody, match="needs 'model'"):
        parse_request("anthropic", b'{"messages": []}')


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"upstreams": {"a": {"kind": "grpc", "base_url": "http://x"}}}, "upstreams.a.kind"),
        ({"upstreams": {"a": {"kind": "openai", "base_url": "x"}}}, "upstreams.a.base_url"),
        ({"upstreams": {"a": {"kind": "openai", "base_url": "http://x", "timeout_s": 0}}},
         "upstreams.a.timeout_s"),
        ({"upstreams": {"a": {"kind": "openai", "base_url": "http://x", "colour": 1}}},
         "unknown keys ['colour']"),
        ({"upstreams": {"a": {"kind": "openai", "base_url": "http://x"},
                        "b": {"kind": "openai", "base_url": "http://y"}}}, "keep one"),
        ({"port": 70000}, "port must be <= 65535"),
        ({"max_body_bytes": True}, "max_body_bytes"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(raw: dict[str, object], names: str) -> None:
    with pytest.raises(GatewayConfigError, match=names.replace("[", r"\[").replace("]", r"\]")):
        GatewayConfig.from_dict(raw)


def test_config_defaults() -> None:
    config = GatewayConfig.from_dict(
        {"upstreams": {"claude": {"kind": "anthropic", "base_url": "https://api.anthropic.com/"}}}
    )
    spec = config.upstream_for("anthropic")
    assert spec is not None and spec.api_key_env == "ANTHROPIC_API_KEY"
    assert spec.base_url == "https://api.anthropic.com"
    assert config.upstream_for("openai") is None
