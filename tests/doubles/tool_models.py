"""TEST DOUBLES of the models behind real agents: Anthropic Messages (claude-agent-acp)
and OpenAI Responses (codex-acp), each calling the agent's own tools from a script.

They never run a model. The script is in the prompt itself, on a line

    DOUBLE_ACTIONS [{"tool": "Write", "input": {...}}, ...]

and each answer is chosen from the request alone (so a retried or repeated request gets
the same answer): the n-th action, as a tool call of the agent's own tool, where n is the
number of tool results the conversation already holds; past the last, the final text
"DOUBLE_DONE n tool results" (the latest conversation's tool results are kept in
`tool_results`, so a test reads what the agent told the model of a refusal). A request
whose prompt has no such line (an agent's title or summary helper) gets a short text.
They stream as the real APIs do (SSE) or answer whole, and report `usage` tokens per
answer (input, output), summed in `tokens` so a test can compare the gateway's counts
with the double's.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from tests.doubles._http import DoubleServer, RequestContext

MARKER = "DOUBLE_ACTIONS "


def actions_line(actions: list[dict[str, Any]]) -> str:
    """The prompt line that scripts `actions` (each {"tool": NAME, "input": {...}})."""
    return MARKER + json.dumps(actions)


def _script(texts: list[str]) -> list[dict[str, Any]] | None:
    for text in texts:
        for line in text.splitlines():
            if line.startswith(MARKER):
                value = json.loads(line.removeprefix(MARKER))
                return value if isinstance(value, list) else None
    return None


class _ToolModel:
    """What both doubles share: the server, the record, the token count."""

    def __init__(self, usage: tuple[int, int] = (100, 20)) -> None:
        self.usage = usage
        self.requests: list[dict[str, Any]] = []
        self.tool_results: list[str] = []
        self.tokens = {"input": 0, "output": 0}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._answering = threading.local()
        self._server = DoubleServer(self._serve)

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> _ToolModel:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _count(self, body: dict[str, Any]) -> None:
        """Record a model call; its tokens count once its answer has gone out whole (as
        a real model's usage reaches a client only at the end of its answer: a call the
        caller abandoned before the end is not one the gateway can count either)."""
        with self._lock:
            self.requests.append(body)
        self._answering.spends = True

    def _serve(self, ctx: RequestContext) -> None:
        self._answering.spends = False
        self._route(ctx)  # an answer cut off raises (BrokenPipe, reset): nothing counted
        if self._answering.spends:
            with self._lock:
                self.tokens["input"] += self.usage[0]
                self.tokens["output"] += self.usage[1]

    def _route(self, ctx: RequestContext) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _choose(
        self, texts: list[str], results: list[str], *, tools: bool = True
    ) -> tuple[dict[str, Any] | None, str]:
        """The next tool call of the conversation whose user texts and tool results these
        are, or (None, its final text): here from the DOUBLE_ACTIONS line. `tools`: the
        request offers tools (a subclass may answer a request without them in text)."""
        script = _script(texts)
        if script is not None and results:  # the latest conversation's
            self.tool_results[:] = results
        if script is not None and len(results) < len(script):
            return script[len(results)], ""
        return None, "ok" if script is None else f"DOUBLE_DONE {len(results)} tool results"


class AnthropicToolModel(_ToolModel):
    """POST /v1/messages (and count_tokens) for claude-agent-acp's ANTHROPIC_BASE_URL."""

    def _route(self, ctx: RequestContext) -> None:
        path = ctx.path.split("?")[0]
        if ctx.method == "POST" and path == "/v1/messages/count_tokens":
            ctx.reply_json(200, {"input_tokens": self.usage[0]})
            return
        if ctx.method != "POST" or path != "/v1/messages":
            ctx.reply_json(404, {"type": "error", "error": {"type": "not_found_error",
                                                            "message": path}})  # fmt: skip
            return
        body = ctx.json()
        self._count(body)
        texts, results = [], []
        for message in body.get("messages", []):
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for block in blocks or []:
                if block.get("type") == "text" and message.get("role") == "user":
                    texts.append(block["text"])
                if block.get("type") == "tool_result":
                    inner = block.get("content")
                    results.append(inner if isinstance(inner, str) else json.dumps(inner))
        step, text = self._choose(texts, results, tools=bool(body.get("tools")))
        if step is not None:
            block = {"type": "tool_use", "id": f"toolu_{next(self._ids)}",
                     "name": step["tool"], "input": step["input"]}  # fmt: skip
        else:
            block = {"type": "text", "text": text}
        stop = "tool_use" if step is not None else "end_turn"
        if body.get("stream") is True:
            self._stream(ctx, body, block, stop)
            return
        ctx.reply_json(200, {
            "id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
            "model": body.get("model", "double"), "content": [block], "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": self.usage[0], "output_tokens": self.usage[1]},
        })  # fmt: skip

    def _stream(self, ctx: RequestContext, body: dict[str, Any], block: dict[str, Any],
                stop: str) -> None:  # fmt: skip
        message = {"id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
                   "model": body.get("model", "double"), "content": [], "stop_reason": None,
                   "stop_sequence": None,
                   "usage": {"input_tokens": self.usage[0], "output_tokens": 1}}  # fmt: skip
        ctx.start_sse()
        ctx.send_sse({"type": "message_start", "message": message}, event="message_start")
        if block["type"] == "tool_use":
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        ctx.send_sse({"type": "content_block_start", "index": 0, "content_block": start},
                     event="content_block_start")  # fmt: skip
        ctx.send_sse({"type": "content_block_delta", "index": 0, "delta": delta},
                     event="content_block_delta")  # fmt: skip
        ctx.send_sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
        end = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
               "usage": {"output_tokens": self.usage[1]}}  # fmt: skip
        ctx.send_sse(end, event="message_delta")
        ctx.send_sse({"type": "message_stop"}, event="message_stop")


class ResponsesToolModel(_ToolModel):
    """POST /v1/responses (OpenAI Responses, streamed) for codex-acp's model provider.
    Its tools are function calls (codex: `exec_command` {"cmd": ...}; an `apply_patch`
    heredoc there is Codex's edit, which asks permission)."""

    @property
    def base_url(self) -> str:
        return self._server.base_url + "/v1"

    def _route(self, ctx: RequestContext) -> None:
        if ctx.method != "POST" or ctx.path.split("?")[0] != "/v1/responses":
            ctx.reply_json(404, {"error": {"message": f"no route {ctx.path}"}})
            return
        body = ctx.json()
        self._count(body)
        texts, results = [], []
        items = body.get("input")
        for item in items if isinstance(items, list) else []:
            if item.get("type") == "message" and item.get("role") == "user":
                for part in item.get("content") or []:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
            elif str(item.get("type", "")).endswith("_call_output"):
                output = item.get("output")
                results.append(output if isinstance(output, str) else json.dumps(output))
        if isinstance(items, str):
            texts.append(items)
        step, text = self._choose(texts, results, tools=bool(body.get("tools")))
        if step is not None:
            item_id = next(self._ids)
            output = {"type": "function_call", "id": f"fc_{item_id}", "call_id": f"call_{item_id}",
                      "name": step["tool"], "arguments": json.dumps(step["input"]),
                      "status": "completed"}  # fmt: skip
        else:
            part = {"type": "output_text", "text": text, "annotations": []}
            output = {"type": "message", "id": f"msg_{next(self._ids)}", "role": "assistant",
                      "status": "completed", "content": [part]}  # fmt: skip
        response_id = f"resp_{next(self._ids)}"
        usage = {"input_tokens": self.usage[0], "output_tokens": self.usage[1],
                 "total_tokens": sum(self.usage), "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
        done = {"id": response_id, "object": "response", "status": "completed",
                "model": body.get("model", "double"), "output": [output],
                "usage": usage}  # fmt: skip
        if body.get("stream") is not True:
            ctx.reply_json(200, done)
            return
        ctx.start_sse()
        created = {**done, "status": "in_progress", "output": [], "usage": None}
        ctx.send_sse({"type": "response.created", "response": created}, event="response.created")
        ctx.send_sse({"type": "response.output_item.added", "output_index": 0, "item": output},
                     event="response.output_item.added")  # fmt: skip
        ctx.send_sse({"type": "response.output_item.done", "output_index": 0, "item": output},
                     event="response.output_item.done")  # fmt: skip
        ctx.send_sse({"type": "response.completed", "response": done}, event="response.completed")


class GeminiToolModel(_ToolModel):
    """POST /v1beta/models/M:generateContent and :streamGenerateContent (SSE), and
    :countTokens, for Gemini CLI's GOOGLE_GEMINI_BASE_URL. Its tools are function calls
    (Gemini CLI: `write_file` {"file_path", "content"})."""

    def _route(self, ctx: RequestContext) -> None:
        path = ctx.path.split("?")[0]
        if ctx.method != "POST" or ":" not in path:
            ctx.reply_json(404, {"error": {"code": 404, "message": f"no route {path}"}})
            return
        body = ctx.json()
        method = path.rsplit(":", 1)[1]
        if method == "countTokens":
            ctx.reply_json(200, {"totalTokens": self.usage[0]})
            return
        self._count(body)
        texts, results = [], []
        for content in body.get("contents") or []:
            for piece in content.get("parts") or []:
                if content.get("role") == "user" and isinstance(piece.get("text"), str):
                    texts.append(piece["text"])
                if "functionResponse" in piece:
                    results.append(json.dumps(piece["functionResponse"].get("response")))
        script = _script(texts) if body.get("tools") else None
        if script is not None and results:  # the latest conversation's
            self.tool_results[:] = results
        step = script[len(results)] if script is not None and len(results) < len(script) else None
        if step is not None:
            part: dict[str, Any] = {"functionCall": {"name": step["tool"], "args": step["input"]}}
        elif script is None and body.get("generationConfig", {}).get("responseMimeType") == (
            "application/json"
        ):
            part = {"text": '{"reasoning": "done", "next_speaker": "user"}'}
        else:
            part = {"text": "ok" if script is None else f"DOUBLE_DONE {len(results)} results"}
        answer = {
            "candidates": [{"content": {"role": "model", "parts": [part]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": self.usage[0],
                              "candidatesTokenCount": self.usage[1],
                              "totalTokenCount": sum(self.usage)},
            "modelVersion": "double",
        }  # fmt: skip
        if method != "streamGenerateContent":
            ctx.reply_json(200, answer)
            return
        ctx.start_sse()
        ctx.send_sse(answer)
