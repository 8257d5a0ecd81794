"""TEST DOUBLE of the Anthropic Messages API (`POST /v1/messages`), for the real SDK.

The `anthropic` SDK is pointed at it with base_url. It checks the key (x-api-key, or the
`Authorization: Bearer` header that SDK 2.x sends; 401 without one, like the real API),
answers from a Plan, and records only whether a key came, never the key itself. A request
with `"stream": true` is answered as the real API streams (message_start with the input
tokens, one text delta, message_delta with the output tokens, message_stop).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from tests.doubles._http import DoubleServer, RequestContext
from tests.doubles._plan import Answer, Fail, Hang, Plan


class AnthropicMessagesDouble:
    def __init__(self, plan: Plan | None = None, *, expected_key: str | None = None) -> None:
        self.plan = plan or Plan()
        self.expected_key = expected_key
        self.requests: list[dict[str, Any]] = []
        self.keys_seen: list[bool] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = DoubleServer(self._route)

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> AnthropicMessagesDouble:
        self._server.start()
        return self

    def stop(self) -> None:
        self.plan.release_all()
        self._server.stop()

    def __enter__(self) -> AnthropicMessagesDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _error(self, ctx: RequestContext, status: int, kind: str, message: str) -> None:
        body = {"type": "error", "error": {"type": kind, "message": message}}
        ctx.reply_json(status, body, headers={"request-id": f"req_{next(self._ids)}"})

    def _route(self, ctx: RequestContext) -> None:
        if ctx.method != "POST" or ctx.path.split("?")[0] != "/v1/messages":
            self._error(ctx, 404, "not_found_error", f"no route {ctx.method} {ctx.path}")
            return
        key = ctx.headers.get("x-api-key")
        bearer = ctx.headers.get("Authorization", "")
        if not key and bearer.startswith("Bearer "):
            key = bearer.removeprefix("Bearer ")  # how anthropic SDK 2.x sends api_key
        with self._lock:
            self.keys_seen.append(bool(key))
            self.requests.append(ctx.json())
        if not key or (self.expected_key is not None and key != self.expected_key):
            self._error(ctx, 401, "authentication_error", "invalid x-api-key")
            return
        step = self.plan.next()
        if isinstance(step, Hang):
            step.release.wait(step.limit_s)
            step = step.then
        if isinstance(step, Fail):
            kind = "overloaded_error" if step.status == 529 else "api_error"
            self._error(ctx, step.status, kind, step.message)
            return
        assert isinstance(step, Answer)
        body = ctx.json()
        if body.get("stream") is True:
            self._stream(ctx, step, body)
            return
        ctx.reply_json(
            200,
            {
                "id": f"msg_{next(self._ids)}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "claude-double"),
                "content": [{"type": "text", "text": step.text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": step.input_tokens, "output_tokens": step.output_tokens},
            },
        )

    def _stream(self, ctx: RequestContext, step: Answer, body: dict[str, Any]) -> None:
        message = {
            "id": f"msg_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-double"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": step.input_tokens, "output_tokens": 1},
        }
        ctx.start_sse()
        ctx.send_sse({"type": "message_start", "message": message}, event="message_start")
        block = {"type": "content_block_start", "index": 0,
                 "content_block": {"type": "text", "text": ""}}  # fmt: skip
        ctx.send_sse(block, event="content_block_start")
        ctx.send_sse({"type": "ping"}, event="ping")
        delta = {"type": "content_block_delta", "index": 0,
                 "delta": {"type": "text_delta", "text": step.text}}  # fmt: skip
        ctx.send_sse(delta, event="content_block_delta")
        ctx.send_sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
        end = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
               "usage": {"output_tokens": step.output_tokens}}  # fmt: skip
        ctx.send_sse(end, event="message_delta")
        ctx.send_sse({"type": "message_stop"}, event="message_stop")
