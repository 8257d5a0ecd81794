"""The demo's SCRIPTED fix model: a llama.cpp `/completion` endpoint on 127.0.0.1 that
answers each mutator with the recorded answer for its variant (procs/demo/red_session.py).

    model = RecordedFixModel().start()     # model.base_url for the router's config
    ...
    model.stop()

The router's `mutator` role points at it (procs/demo/project.py writes that config), so
a mutator asks it exactly as it would ask a real llama-server: through the router, with
the prompt of procs/synapse/prompt.py. Not a model: no answer depends on anything but
the "Variant I of N" line of the prompt, and the demo says so. It runs in threads of the
demo's own process (no child to supervise, gone with the demo); every prompt is kept
for the summary.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from procs.demo.red_session import fix_answer

MAX_BODY_BYTES = 1 << 20
_VARIANT = re.compile(r"^Variant (\d+) of \d+\.", re.MULTILINE)


class RecordedFixModel:
    def __init__(self) -> None:
        self.prompts: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() it first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RecordedFixModel:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                model.serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the demo prints its own progress

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="recorded-fix-model", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (returns within the poll interval); idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def asked(self) -> int:
        with self._lock:
            return len(self.prompts)

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        if request.path != "/completion":
            _reply(request, 404, {"error": {"code": 404, "message": "File Not Found"}})
            return
        try:
            size = int(request.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_BODY_BYTES:
                raise ValueError(f"Content-Length {size} is not 1..{MAX_BODY_BYTES}")
            body = json.loads(request.rfile.read(size))
            prompt = str(body["prompt"])
        except (ValueError, KeyError, TypeError) as exc:
            _reply(request, 400, {"error": {"code": 400, "message": f"bad request: {exc}"}})
            return
        found = _VARIANT.search(prompt)
        text = fix_answer(int(found.group(1))) if found else "No variant in the prompt."
        with self._lock:
            self.prompts.append(prompt)
        _reply(request, 200, {"content": text, "model": "recorded-fix", "stop": True,
                              "stop_type": "eos", "tokens_evaluated": len(prompt) // 4,
                              "tokens_predicted": len(text) // 4})  # fmt: skip


def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
