"""A scripted model's HTTP server on 127.0.0.1, in threads of the demo's own process (no
child to supervise, gone with the demo): the start, stop and URL both recorded models
share. A subclass answers each POST in `serve`; anything else is a 404 naming the route.

    model = SomeRecordedModel().start()    # model.base_url
    model.stop()                            # idempotent, bounded

`root_url` is http://127.0.0.1:PORT; each model's `base_url` is what its clients take.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

POLL_INTERVAL_S = 0.2
JOIN_TIMEOUT_S = 5.0


class LocalHttpModel:
    thread_name = "recorded-model"
    protocol_version = "HTTP/1.1"  # http.server's default is HTTP/1.0 (a close per answer)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        assert self._server is not None, "start() it first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = model.protocol_version

            def do_POST(self) -> None:  # http.server's name
                model.serve(self)

            def do_GET(self) -> None:
                send_json(self, 404, {"error": {"message": f"no route GET {self.path}"}})

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the demo prints its own progress

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": POLL_INTERVAL_S},
                                        name=self.thread_name, daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (returns within the poll interval); idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=JOIN_TIMEOUT_S)
            self._thread = None


def send_json(request: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
