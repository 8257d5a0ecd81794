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
from http.server import BaseHTTPRequestHandler

from procs.demo.local_http import LocalHttpModel, send_json
from procs.demo.red_session import fix_answer

MAX_BODY_BYTES = 1 << 20
_VARIANT = re.compile(r"^Variant (\d+) of \d+\.", re.MULTILINE)


class RecordedFixModel(LocalHttpModel):
    thread_name = "recorded-fix-model"
    protocol_version = "HTTP/1.0"

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    @property
    def base_url(self) -> str:
        return self.root_url

    def asked(self) -> int:
        with self._lock:
            return len(self.prompts)

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        if request.path != "/completion":
            send_json(request, 404, {"error": {"code": 404, "message": "File Not Found"}})
            return
        try:
            size = int(request.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_BODY_BYTES:
                raise ValueError(f"Content-Length {size} is not 1..{MAX_BODY_BYTES}")
            body = json.loads(request.rfile.read(size))
            prompt = str(body["prompt"])
        except (ValueError, KeyError, TypeError) as exc:
            send_json(request, 400, {"error": {"code": 400, "message": f"bad request: {exc}"}})
            return
        found = _VARIANT.search(prompt)
        text = fix_answer(int(found.group(1))) if found else "No variant in the prompt."
        with self._lock:
            self.prompts.append(prompt)
        send_json(request, 200, {"content": text, "model": "recorded-fix", "stop": True,
                                 "stop_type": "eos", "tokens_evaluated": len(prompt) // 4,
                                 "tokens_predicted": len(text) // 4})  # fmt: skip
