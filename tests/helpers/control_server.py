"""A real control server answered from a thread, standing in for factoryd or a service
when a test is about the client side (factoryctl's rendering, exit codes, pipes)."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ipc import control

Handler = Callable[[str, dict[str, Any]], Any]


@contextlib.contextmanager
def serving(socket_path: Path, handler: Handler, *, timeout: float = 10.0) -> Iterator[None]:
    """Listen on `socket_path` (0600, as ControlServer makes it) until the block ends;
    each request gets `handler(command, args)` as its result, or the error reply of the
    RequestRefused it raises. Every read and write is bounded by `timeout`."""
    server = control.ControlServer(socket_path)
    stop = threading.Event()

    def answer(conn: Any) -> None:
        deadline = time.monotonic() + timeout
        with conn, contextlib.suppress(control.ControlError):
            command, args = control.parse_request(control.recv_frame(conn, deadline=deadline))
            try:
                reply = {"ok": True, "result": handler(command, args)}
            except control.RequestRefused as exc:
                reply = control.error_reply(exc.type, str(exc))
            control.send_frame(conn, reply, deadline=deadline)

    def loop() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([server], [], [], 0.05)
            if ready and (conn := server.accept_nowait()) is not None:
                answer(conn)

    thread = threading.Thread(target=loop, name="control-server", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=timeout)
        server.close()
