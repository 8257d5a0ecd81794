"""Reading token usage out of what upstreams send, plain or streamed (SSE), per protocol.

Pure functions and small incremental parsers, no I/O, so every shape is testable alone.
The counts are the upstream's own usage fields, never an estimate:

- OpenAI chat completions: `usage.prompt_tokens` / `completion_tokens`; streamed, the chunk
  that carries `usage` (the last one wins: some servers repeat it cumulatively). A streamed
  request that did not ask for it gets `stream_options.include_usage` added, and the
  usage-only chunk (empty `choices`) it brings is kept from the client, which never asked.
- OpenAI Responses: `usage.input_tokens` / `output_tokens`; streamed, the `response` of
  the final `response.completed` (or `.incomplete` / `.failed`) event.
- Anthropic Messages: `usage.input_tokens` / `output_tokens` (+ cache creation and cache
  reads as cached tokens); streamed, `message_start`'s usage, then `message_delta`'s
  cumulative counts over it.
- Gemini: `usageMetadata` (procs.llm.gateway_gemini.usage); streamed, the last chunk's.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from procs.llm import gateway_gemini
from procs.llm.gateway_store import CallUsage

_SEPARATORS = (b"\r\n\r\n", b"\n\n")
RESPONSES_ENDS = ("response.completed", "response.incomplete", "response.failed")


class BadRequestBody(ValueError):
    """The client's request body is not what the protocol expects; says what is wrong."""


def parse_request(protocol: str, body: bytes) -> dict[str, Any]:
    """The request as a dict; raises BadRequestBody naming the first problem."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestBody(f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequestBody(f"request body must be a JSON object, got {type(obj).__name__}")
    if protocol == "gemini":
        if problem := gateway_gemini.check_request(obj):
            raise BadRequestBody(problem)
        return obj
    if protocol == "responses":
        if not isinstance(obj.get("input"), str | list):
            raise BadRequestBody("request body needs 'input', a string or a list")
    elif not isinstance(obj.get("messages"), list):
        raise BadRequestBody("request body needs 'messages', a list")
    if not isinstance(obj.get("stream", False), bool):
        raise BadRequestBody(f"'stream' must be true or false, got {obj['stream']!r}")
    if protocol == "anthropic" and not isinstance(obj.get("model"), str):
        raise BadRequestBody("request body needs 'model', a string")
    return obj


def ask_openai_usage(request: dict[str, Any]) -> dict[str, Any] | None:
    """The request with `stream_options.include_usage` set, or None when it already is
    (or the request does not stream)."""
    if not request.get("stream"):
        return None
    options = request.get("stream_options")
    options = options if isinstance(options, dict) else {}
    if options.get("include_usage") is True:
        return None
    return {**request, "stream_options": {**options, "include_usage": True}}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(obj: Any) -> CallUsage | None:
    """Usage of a chat completion (or a chunk); None when it carries none."""
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(usage, dict):
        return None
    return CallUsage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def responses_usage(obj: Any) -> CallUsage | None:
    """Usage of a Responses answer (input_tokens counts its cached part already)."""
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(usage, dict):
        return None
    return CallUsage(_count(usage.get("input_tokens")), _count(usage.get("output_tokens")))


def anthropic_usage(usage: Any, before: CallUsage | None = None) -> CallUsage | None:
    """An Anthropic `usage` object over the counts `before` it (fields absent keep them)."""
    if not isinstance(usage, dict):
        return before
    base = before or CallUsage()
    cached = base.cached_tokens
    if "cache_creation_input_tokens" in usage or "cache_read_input_tokens" in usage:
        cached = _count(usage.get("cache_creation_input_tokens")) + _count(
            usage.get("cache_read_input_tokens")
        )
    return CallUsage(
        _count(usage["input_tokens"]) if "input_tokens" in usage else base.input_tokens,
        _count(usage["output_tokens"]) if "output_tokens" in usage else base.output_tokens,
        cached,
    )


def body_usage(protocol: str, body: bytes) -> CallUsage | None:
    """Usage of a whole (non-streamed) answer; None when absent or not JSON."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if protocol == "openai":
        return openai_usage(obj)
    if protocol == "responses":
        return responses_usage(obj)
    if protocol == "gemini":
        return gateway_gemini.usage(obj)
    return anthropic_usage(obj.get("usage")) if isinstance(obj, dict) else None


class SseSplitter:
    """Cuts a byte stream into whole server-sent events, each with its blank line."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The events `data` completes, in order. Linear in the bytes fed: each separator
        is searched for again only once the cut has passed where it was found."""
        buffer = self._buffer + data
        events: list[bytes] = []
        start = 0
        found = {sep: buffer.find(sep) for sep in _SEPARATORS}
        while True:
            for sep, at in found.items():
                if 0 <= at < start:
                    found[sep] = buffer.find(sep, start)
            cuts = [(at, len(sep)) for sep, at in found.items() if at >= 0]
            if not cuts:
                break
            at, width = min(cuts)
            events.append(buffer[start : at + width])
            start = at + width
        self._buffer = buffer[start:]
        return events

    def rest(self) -> bytes:
        """What came after the last whole event (a stream cut short)."""
        rest, self._buffer = self._buffer, b""
        return rest


def event_data(event: bytes) -> bytes:
    """The `data:` lines of one event, joined as the SSE spec says."""
    lines = [
        line.removeprefix(b"data:").removeprefix(b" ")
        for line in event.splitlines()
        if line.startswith(b"data:")
    ]
    return b"\n".join(lines)


class StreamMeter:
    """Follows one streamed answer event by event; `usage` holds the counts so far."""

    def __init__(self, kind: str, *, hide_usage_chunk: bool = False) -> None:
        self.kind = kind
        self.hide_usage_chunk = hide_usage_chunk
        self.usage: CallUsage | None = None
        self.done = False

    def keep(self, event: bytes) -> bool:
        """Take in one event; False when the client must not see it."""
        data = event_data(event)
        if self.kind == "gemini":  # no end marker: the stream's end settles it
            return self._gemini(data)
        if data == b"[DONE]" or b'"message_stop"' in data:
            self.done = True
        if b'"usage"' not in data:
            return True
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if self.kind == "openai":
            usage = openai_usage(obj)
            if usage is None:
                return True
            self.usage = usage
            return not (self.hide_usage_chunk and obj.get("choices") == [])
        if self.kind == "responses":
            if isinstance(obj, dict) and obj.get("type") in RESPONSES_ENDS:
                self.usage = responses_usage(obj.get("response"))
                self.done = True
            return True
        if isinstance(obj, dict) and obj.get("type") == "message_start":
            message = obj.get("message")
            self.usage = anthropic_usage(
                message.get("usage") if isinstance(message, dict) else None
            )
        elif isinstance(obj, dict) and obj.get("type") == "message_delta":
            self.usage = anthropic_usage(obj.get("usage"), self.usage)
        return True

    def _gemini(self, data: bytes) -> bool:
        if b'"usageMetadata"' in data:
            with contextlib.suppress(orjson.JSONDecodeError):
                self.usage = gateway_gemini.usage(orjson.loads(data)) or self.usage
        return True
