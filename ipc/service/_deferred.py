"""A result that comes later, delivered on the loop's thread (a gen_server's noreply).

A call that takes long (an LLM request) returns a Deferred from its handler; the
connection waits for it without holding the loop, and the reply goes out once
`resolve` or `fail` is called, from the loop's thread (ServiceLoop.run_in_thread
does that for work done in a worker thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Deferred:
    def __init__(self) -> None:
        self.done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Deferred], None]] = []

    def resolve(self, value: Any) -> None:
        self._finish(value, None)

    def fail(self, error: BaseException) -> None:
        self._finish(None, error)

    def result(self) -> Any:
        """The value, or the exception raised again (only once done)."""
        if not self.done:
            raise RuntimeError("Deferred.result() before it is done")
        if self._error is not None:
            raise self._error
        return self._value

    def add_done_callback(self, callback: Callable[[Deferred], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        if self.done:
            return
        self.done, self._value, self._error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)
