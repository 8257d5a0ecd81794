"""The gateway's own errors in each protocol's shape: whole answers and mid-stream events.

- OpenAI (chat and Responses): `{"error": {"type", "message", "code"}}`;
- Anthropic: `{"type": "error", "error": {"type", "message"}}`;
- Gemini: `{"error": {"code", "message", "status", "details"}}` (procs.llm.gateway_gemini).

Mid-stream, each is written as its clients read a failure: an `event: error` for Anthropic
and Responses, a `data:` error for chat, and for Gemini the bare JSON error with no SSE
framing, which @google/genai checks every read for (it throws an ApiError carrying the
code; were it read together with earlier bytes, the unterminated tail fails the stream).
"""

from __future__ import annotations

import orjson

from procs.llm import gateway_gemini


def error_body(kind: str, status: int, type_: str, message: str) -> bytes:
    """An error answer in the shape the protocol's SDKs parse."""
    if kind == "gemini":
        return orjson.dumps(gateway_gemini.error_object(status, type_, message))
    error = {"type": type_, "message": message}
    if kind == "anthropic":
        return orjson.dumps({"type": "error", "error": error})
    return orjson.dumps({"error": {**error, "code": type_}})


def error_event(protocol: str, type_: str, message: str, *, status: int = 502) -> bytes:
    """A mid-stream failure as the protocol's clients expect to read it."""
    if protocol == "anthropic":
        data = orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})
        return b"event: error\ndata: " + data + b"\n\n"
    if protocol == "responses":
        data = orjson.dumps({"type": "error", "code": type_, "message": message})
        return b"event: error\ndata: " + data + b"\n\n"
    if protocol == "gemini":
        return orjson.dumps(gateway_gemini.error_object(status, type_, message))
    return b"data: " + orjson.dumps({"error": {"type": type_, "message": message}}) + b"\n\n"
