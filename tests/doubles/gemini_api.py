"""TEST DOUBLE of the Gemini API (generativelanguage v1beta), as Gemini CLI calls it.

It serves what @google/genai sends when GOOGLE_GEMINI_BASE_URL points at a server:
`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` (SSE
`data:` events cut by CRLF CRLF, as the real API sends them) and `:countTokens`. The key
comes in `x-goog-api-key` or `?key=`; a missing or wrong one is refused as the real API
does (400 INVALID_ARGUMENT, API_KEY_INVALID). Answers come from a Plan; every answer carries
`usageMetadata` from the step's figures plus the double's `cached_tokens` (part of the
prompt count, as the real API counts them) and `thoughts_tokens`. A stream sends the text
in `chunks` pieces, every chunk with the counts so far, the last with the whole counts and
finishReason. `break_after=n` hangs up a stream after n chunks with no end (chunked framing
cut short). Records each request's body, action and path (query included), never a key:
`key_ok` says whether the expected key came.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from tests.doubles._http import DoubleServer, RequestContext
from tests.doubles._plan import Answer, Fail, Hang, Plan

STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


@dataclass(frozen=True)
class Seen:
    action: str
    path: str
    body: Any
    key_ok: bool


class GeminiApiDouble:
    def __init__(
        self,
        plan: Plan | None = None,
        *,
        expected_key: str | None = None,
        cached_tokens: int = 0,
        thoughts_tokens: int = 0,
        chunks: int = 3,
        break_after: int | None = None,
    ) -> None:
        self.plan = plan or Plan()
        self.expected_key = expected_key
        self.cached_tokens = cached_tokens
        self.thoughts_tokens = thoughts_tokens
        self.chunks = chunks
        self.break_after = break_after
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server = DoubleServer(self._route)

    @property
    def base_url(self) -> str:
        """What GOOGLE_GEMINI_BASE_URL would be: the host, the SDK adds /v1beta."""
        return self._server.base_url

    def start(self) -> GeminiApiDouble:
        self._server.start()
        return self

    def stop(self) -> None:
        self.plan.release_all()
        self._server.stop()

    def __enter__(self) -> GeminiApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def usage_metadata(self, step: Answer, output_so_far: int | None = None) -> dict[str, int]:
        """The figures an answer reports: promptTokenCount includes the cached part."""
        output = step.output_tokens if output_so_far is None else output_so_far
        thoughts = self.thoughts_tokens if output_so_far is None else 0
        prompt = step.input_tokens + self.cached_tokens
        meta = {"promptTokenCount": prompt, "candidatesTokenCount": output,
                "totalTokenCount": prompt + output + thoughts}  # fmt: skip
        if self.cached_tokens:
            meta["cachedContentTokenCount"] = self.cached_tokens
        if thoughts:
            meta["thoughtsTokenCount"] = thoughts
        return meta

    def _error(self, ctx: RequestContext, code: int, message: str, reason: str = "") -> None:
        error: dict[str, Any] = {"code": code, "message": message,
                                 "status": STATUS.get(code, "INTERNAL")}  # fmt: skip
        if reason:
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                    "domain": "googleapis.com"}  # fmt: skip
            error["details"] = [info]
        ctx.reply_json(code, {"error": error})

    def _route(self, ctx: RequestContext) -> None:
        path, _, query = ctx.path.partition("?")
        model, _, action = path.removeprefix("/v1beta/models/").partition(":")
        if ctx.method != "POST" or not path.startswith("/v1beta/models/") or not action:
            self._error(ctx, 404, f"no route {ctx.method} {path}")
            return
        key = ctx.headers.get("x-goog-api-key") or next(
            (p[4:] for p in query.split("&") if p.startswith("key=")), ""
        )
        key_ok = bool(key) and (self.expected_key is None or key == self.expected_key)
        body = ctx.json()
        with self._lock:
            self.requests.append(Seen(action, ctx.path, body, key_ok))
        if not key_ok:
            message = "API key not valid. Please pass a valid API key."
            self._error(ctx, 400, message, "API_KEY_INVALID")
            return
        if action == "countTokens":
            ctx.reply_json(200, {"totalTokens": 5 + self.cached_tokens})
            return
        step = self.plan.next()
        if isinstance(step, Hang):
            step.release.wait(step.limit_s)
            step = step.then
        if isinstance(step, Fail):
            self._error(ctx, step.status, step.message)
            return
        assert isinstance(step, Answer)
        if action == "streamGenerateContent" and "alt=sse" in query:
            self._stream(ctx, step, model)
            return
        ctx.reply_json(200, self._chunk(step.text, model, self.usage_metadata(step), "STOP"))

    def _chunk(self, text: str, model: str, meta: dict[str, int], finish: str | None) -> Any:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]},
                                     "index": 0}  # fmt: skip
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": meta, "modelVersion": model,
                "responseId": "double-1"}  # fmt: skip

    def _stream(self, ctx: RequestContext, step: Answer, model: str) -> None:
        handler = ctx.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.close_connection = True
        n = max(1, self.chunks)
        size = -(-len(step.text) // n)
        for i in range(n):
            if self.break_after is not None and i >= self.break_after:
                return  # hang up: no last chunk
            last = i == n - 1
            so_far = None if last else step.output_tokens * (i + 1) // n
            meta = self.usage_metadata(step, so_far)
            piece = step.text[i * size : (i + 1) * size]
            data = json.dumps(self._chunk(piece, model, meta, "STOP" if last else None))
            event = f"data: {data}\r\n\r\n".encode()
            handler.wfile.write(b"%x\r\n%b\r\n" % (len(event), event))
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
