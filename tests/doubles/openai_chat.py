"""TEST DOUBLE of an OpenAI-compatible chat-completions server, the model behind opencode.

Scripts the model: each request that offers tools takes the next scripted reply (text, a
tool call, or a reply held until the test releases it); requests without tools (opencode's
title/summary helpers) get a fixed short text so they never consume the script. Every
request body is recorded, with the time the double spent answering it, so a test can read
what the agent sent back (e.g. the refusal text of a tool call) and a bench can subtract
model time from a turn.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.doubles._http import DoubleServer, RequestContext


@dataclass(frozen=True)
class TextReply:
    text: str


@dataclass(frozen=True)
class ToolCallReply:
    name: str
    arguments: dict[str, Any]


@dataclass
class HeldReply:
    """Answer only once `release` is set (or `timeout_s` passes); `started` marks arrival."""

    then: TextReply | ToolCallReply
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    timeout_s: float = 30.0


Reply = TextReply | ToolCallReply | HeldReply


@dataclass
class RecordedRequest:
    body: dict[str, Any]
    scripted: bool
    served_s: float = 0.0


class ChatCompletionsDouble:
    """POST /v1/chat/completions (streaming or not) answered from a script."""

    def __init__(
        self,
        script: list[Reply],
        *,
        model: str = "scripted",
        usage: tuple[int, int] = (10, 5),
        models: list[str] | None = None,
    ) -> None:
        """`usage` is (prompt_tokens, completion_tokens) reported by every answer,
        streamed ones in their last chunk; `models` makes GET /v1/models list those ids
        (None: 404, as before)."""
        self.model = model
        self.usage = usage
        self.models = models
        self._script = list(script)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.requests: list[RecordedRequest] = []
        self._server = DoubleServer(self._route)

    @property
    def base_url(self) -> str:
        return self._server.base_url + "/v1"

    def start(self) -> ChatCompletionsDouble:
        self._server.start()
        return self

    def stop(self) -> None:
        for reply in self._script:
            if isinstance(reply, HeldReply):
                reply.release.set()
        self._server.stop()

    def __enter__(self) -> ChatCompletionsDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_script(self, script: list[Reply]) -> None:
        """Replace what the next tool-offering requests get (releasing any held reply)."""
        with self._lock:
            for reply in self._script:
                if isinstance(reply, HeldReply):
                    reply.release.set()
            self._script = list(script)

    def scripted_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests if r.scripted]

    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    def model_time_s(self) -> float:
        with self._lock:
            return sum(r.served_s for r in self.requests)

    def _next_reply(self, body: dict[str, Any]) -> tuple[Reply, RecordedRequest]:
        scripted = bool(body.get("tools"))
        with self._lock:
            record = RecordedRequest(body=body, scripted=scripted)
            self.requests.append(record)
            if not scripted:
                return TextReply("Scripted title"), record
            reply = self._script.pop(0) if self._script else TextReply("done")
            return reply, record

    def _usage(self) -> dict[str, int]:
        prompt, completion = self.usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _route(self, ctx: RequestContext) -> None:
        if self.models is not None and ctx.method == "GET" and ctx.path.endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": "double"} for m in self.models]
            ctx.reply_json(200, {"object": "list", "data": data})
            return
        if ctx.method != "POST" or not ctx.path.endswith("/chat/completions"):
            ctx.reply_json(404, {"error": {"message": f"no route {ctx.method} {ctx.path}"}})
            return
        began = time.monotonic()
        body = ctx.json()
        reply, record = self._next_reply(body)
        if isinstance(reply, HeldReply):
            reply.started.set()
            reply.release.wait(reply.timeout_s)
            reply = reply.then
        if body.get("stream"):
            self._stream(ctx, reply)
        else:
            ctx.reply_json(200, self._complete(reply))
        record.served_s = time.monotonic() - began

    def _message(self, reply: TextReply | ToolCallReply) -> tuple[dict[str, Any], str]:
        if isinstance(reply, TextReply):
            return {"role": "assistant", "content": reply.text}, "stop"
        call = {
            "id": f"call_{next(self._ids)}",
            "type": "function",
            "function": {"name": reply.name, "arguments": json.dumps(reply.arguments)},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"

    def _complete(self, reply: TextReply | ToolCallReply) -> dict[str, Any]:
        message, finish = self._message(reply)
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._usage(),
        }

    def _stream(self, ctx: RequestContext, reply: TextReply | ToolCallReply) -> None:
        message, finish = self._message(reply)
        base = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
        }
        delta: dict[str, Any] = {"role": "assistant"}
        if message.get("tool_calls"):
            delta["tool_calls"] = [dict(message["tool_calls"][0], index=0)]
        else:
            delta["content"] = message["content"]
        ctx.start_sse()
        chunk = {"index": 0, "delta": delta, "finish_reason": None}
        ctx.send_sse(dict(base, choices=[chunk]))
        ctx.send_sse(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
        ctx.send_sse(dict(base, choices=[], usage=self._usage()))
        ctx.send_sse("[DONE]")
