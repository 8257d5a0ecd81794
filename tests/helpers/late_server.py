"""A control server that is down when first called and comes up once a caller found it
down: a peer restarting under its supervisor, for tests of callers that must wait for
it. Install it with monkeypatch.setattr(control, "call", late.call); every caller of
ipc.control.call then goes through it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ipc import control
from tests.helpers.control_server import Handler, serving

REAL_CALL = control.call


class LateServer:
    """Serves `handler` on `path` from the first failed call on (`failures` counts the
    calls that found nothing listening); `down()` stops it again (a second restart)."""

    def __init__(self, path: Path, handler: Handler | None = None) -> None:
        self.path = path
        self.handler: Handler = handler or (lambda command, args: {"command": command})
        self.failures = 0
        self.up = False
        self._stack = contextlib.ExitStack()

    def call(self, *args: Any, **kw: Any) -> Any:
        try:
            return REAL_CALL(*args, **kw)
        except control.DaemonNotRunning:
            self.failures += 1
            if not self.up:
                self._stack.enter_context(serving(self.path, self.handler))
                self.up = True
            raise

    def down(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.path.unlink(missing_ok=True)
        self.up = False

    def close(self) -> None:
        self._stack.close()
