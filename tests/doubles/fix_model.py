"""TEST DOUBLE of a model behind a llama.cpp server's `/completion`, answering each
request by what its prompt says (not in arrival order, as tests/doubles/_plan.py's Plan
does): `answer(prompt) -> Step`. The synapse's mutators send "Variant I of N" in their
prompts, so a swarm test scripts each variant: a right fix, a wrong one, prose, a hang.

Not a model: the content is whatever `answer` says. Every request body is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.doubles._http import DoubleServer, RequestContext
from tests.doubles._plan import Answer, Fail, Hang, Step


class PromptAnsweredLlamaCpp:
    def __init__(self, answer: Callable[[str], Step]) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.hangs: list[Hang] = []
        self._lock = threading.Lock()
        self._server = DoubleServer(self._route)

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> PromptAnsweredLlamaCpp:
        self._server.start()
        return self

    def release_all(self) -> None:
        """Let every held reply go (before stopping whoever waits on them)."""
        with self._lock:
            for hang in self.hangs:
                hang.release.set()

    def stop(self) -> None:
        self.release_all()
        self._server.stop()

    def prompts(self) -> list[str]:
        with self._lock:
            return [str(r.get("prompt", "")) for r in self.requests]

    def _route(self, ctx: RequestContext) -> None:
        if ctx.method != "POST" or ctx.path != "/completion":
            ctx.reply_json(404, {"error": {"code": 404, "message": "File Not Found"}})
            return
        body = ctx.json()
        step = self.answer(str(body.get("prompt", "")))
        with self._lock:
            self.requests.append(body)
            if isinstance(step, Hang):
                self.hangs.append(step)
        if isinstance(step, Hang):
            step.release.wait(step.limit_s)
            step = step.then
        if isinstance(step, Fail):
            ctx.reply_json(step.status, {"error": {"code": step.status, "message": step.message}})
            return
        assert isinstance(step, Answer)
        reply = {
            "content": step.text,
            "model": "double.gguf",
            "stop": True,
            "stop_type": "eos",
            "tokens_predicted": step.output_tokens,
            "tokens_evaluated": step.input_tokens,
        }
        ctx.reply_json(200, reply)
