"""The demo's SCRIPTED coding model for real opencode agents: an OpenAI-compatible chat
completions server on 127.0.0.1 that replays the recorded session (procs/demo/recorded.py)
through opencode's own tools.

    model = RecordedRoleModel().start()    # model.base_url: ".../v1" for [loop.model]
    ...
    model.stop()

Not a model: each answer is read off the request. The loop's prompt names the role (its
standing instructions open it: "You are the AUDITOR ..."), the bead (its description is
the requirements), and the step: the auditor's "iteration N" (N - 1 tests are in), the
implementer's "attempt N of". The recorded turn's files become opencode `write` tool
calls, one per request (the number of assistant messages in the request says how many
it made already), then its final text with the FACTORY_RESULT line. A request that
offers no tools (opencode's title helper) gets a short text. Answers stream (SSE) when
asked, as opencode asks. Runs in threads of the demo's own process.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from procs.demo.local_http import LocalHttpModel, send_json
from procs.demo.recorded import BEADS, SESSION

MAX_BODY_BYTES = 8 << 20
_ROLE = re.compile(r"\AYou are the (AUDITOR|IMPLEMENTER|ARCHITECT|REVIEWER)\b")
_ITERATION = re.compile(r"^# Auditor turn — iteration (\d+)", re.MULTILINE)
_ATTEMPT = re.compile(r"^# Implementer turn — attempt (\d+) of", re.MULTILINE)
NO_RECORDING = {"status": "no_recording"}


def recorded_step(prompt: str) -> dict[str, Any] | None:
    """The recorded turn a loop's prompt asks for (procs/demo/agents.py's choice, read
    off the prompt); None when the session has none."""
    role_found = _ROLE.match(prompt.lstrip())
    bead = next((b["id"] for b in BEADS if b["description"] in prompt), None)
    if role_found is None:
        return None
    role = role_found.group(1).lower()
    steps = SESSION.get(bead or "", {}).get(role)
    if role in ("architect", "reviewer"):  # the same answer for every bead
        return steps if steps is not None else SESSION["ts-1"][role]  # type: ignore[no-any-return]
    if steps is None:
        return None
    if role == "auditor":
        found = _ITERATION.search(prompt)
        tests_in = int(found.group(1)) - 1 if found else 0
        return steps[min(max(tests_in, 0), len(steps) - 1)]  # type: ignore[no-any-return]
    found = _ATTEMPT.search(prompt)
    attempt = int(found.group(1)) - 1 if found else 0
    tries = steps[_test_index(bead or "", prompt)]
    return tries[min(max(attempt, 0), len(tries) - 1)]  # type: ignore[no-any-return]


def _test_index(bead: str, prompt: str) -> int:
    """Which of the bead's tests the implementer is asked to pass: the last one whose
    name the prompt quotes (the auditor's result names it)."""
    tests = [str(s.get("result", {}).get("test", "")) for s in SESSION[bead]["auditor"]]
    named = [i for i, name in enumerate(tests) if name and name in prompt]
    count = len(SESSION[bead]["implementer"])
    return min(named[-1] if named else 0, count - 1)


def answer(messages: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """(text, None) or ("", a tool call {name, arguments}) for a request's messages."""
    prompt = next((_text(m) for m in messages if m.get("role") == "user"), "")
    step = recorded_step(prompt)
    if step is None:
        return f"No recorded turn for this prompt.\nFACTORY_RESULT {json.dumps(NO_RECORDING)}", None
    writes = list(step.get("write", {}).items())
    made = sum(1 for m in messages if m.get("role") == "assistant")
    if made < len(writes):
        path, content = writes[made]
        return "", {"name": "write", "arguments": {"filePath": path, "content": content}}
    return f"{step['say']}\nFACTORY_RESULT {json.dumps(step['result'])}", None


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class RecordedRoleModel(LocalHttpModel):
    thread_name = "recorded-role-model"

    def __init__(self, model: str = "recorded-session") -> None:
        super().__init__()
        self.model = model
        self.requests = 0
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        if not request.path.endswith("/chat/completions"):
            send_json(request, 404, {"error": {"message": f"no route POST {request.path}"}})
            return
        try:
            size = int(request.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_BODY_BYTES:
                raise ValueError(f"Content-Length {size} is not 1..{MAX_BODY_BYTES}")
            body = json.loads(request.rfile.read(size))
            messages = list(body.get("messages") or [])
        except (ValueError, TypeError, AttributeError) as exc:
            send_json(request, 400, {"error": {"message": f"bad request: {exc}"}})
            return
        with self._lock:
            self.requests += 1
        if body.get("tools"):
            text, call = answer(messages)
        else:
            text, call = "Scripted title", None
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        if call is not None:
            finish = "tool_calls"
            function = {"name": call["name"], "arguments": json.dumps(call["arguments"])}
            tool_call = {"id": f"call_{next(self._ids)}", "type": "function", "function": function}
            message = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
        base = {"id": f"chatcmpl-{next(self._ids)}", "created": int(time.time()),
                "model": self.model}  # fmt: skip
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            send_json(request, 200, {**base, "object": "chat.completion", "usage": usage,
                                 "choices": [{"index": 0, "message": message,
                                              "finish_reason": finish}]})  # fmt: skip
            return
        delta: dict[str, Any] = {"role": "assistant"}
        if call is not None:
            delta["tool_calls"] = [dict(message["tool_calls"][0], index=0)]
        else:
            delta["content"] = text
        chunk = {**base, "object": "chat.completion.chunk"}
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream")
        request.send_header("Cache-Control", "no-cache")
        request.send_header("Connection", "close")
        request.end_headers()
        request.close_connection = True
        for data in ({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                     {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                     {**chunk, "choices": [], "usage": usage}, "[DONE]"):  # fmt: skip
            line = data if isinstance(data, str) else json.dumps(data)
            request.wfile.write(f"data: {line}\n\n".encode())
            request.wfile.flush()
