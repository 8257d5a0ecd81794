"""TEST DOUBLE of a llama.cpp server's `/completion` endpoint (native, non-OpenAI API).

Answers from a Plan (answer / fail with a status / hang until released) and records each
request body, so router tests can check routing, retries, timeouts and the breaker without
a model. Not a model: the content is whatever the plan says.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.doubles._http import DoubleServer, RequestContext
from tests.doubles._plan import Answer, Fail, Hang, Plan


class LlamaCppDouble:
    def __init__(self, plan: Plan | None = None) -> None:
        self.plan = plan or Plan()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = DoubleServer(self._route)

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> LlamaCppDouble:
        self._server.start()
        return self

    def stop(self) -> None:
        self.plan.release_all()
        self._server.stop()

    def __enter__(self) -> LlamaCppDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _route(self, ctx: RequestContext) -> None:
        if ctx.method == "GET" and ctx.path == "/health":
            ctx.reply_json(200, {"status": "ok"})
            return
        if ctx.method != "POST" or ctx.path != "/completion":
            ctx.reply_json(404, {"error": {"code": 404, "message": "File Not Found"}})
            return
        body = ctx.json()
        with self._lock:
            self.requests.append(body)
        step = self.plan.next()
        if isinstance(step, Hang):
            step.release.wait(step.limit_s)
            step = step.then
        if isinstance(step, Fail):
            ctx.reply_json(step.status, {"error": {"code": step.status, "message": step.message}})
            return
        assert isinstance(step, Answer)
        ctx.reply_json(
            200,
            {
                "content": step.text,
                "model": "double.gguf",
                "tokens_predicted": step.output_tokens,
                "tokens_evaluated": step.input_tokens,
                "stop": True,
                "stop_type": "eos",
            },
        )
