"""The service loop: one thread, one poller, fds, timers and worker results.

Built on zmq.Poller so a service can watch plain fds and ZeroMQ sockets alike (a ZeroMQ
socket is level-triggered there; its raw FD is not). No ZeroMQ context is made here.

    loop.watch(fd_or_zmq_socket, READ, callback)   # callback(events)
    loop.every(period_s, callback)                 # a timer; .cancel() ends it
    loop.after(delay_s, callback)
    deferred = loop.run_in_thread(fn, *args)       # bounded worker pool; result on the loop
    loop.stop(exit_code, reason)                   # ends run() after this turn

Every wait is bounded: the poll timeout is the nearest timer or connection deadline.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq

from ipc import control
from ipc.service._deferred import Deferred

Callback = Callable[[int], None]


class Timer:
    def __init__(self, when: float, period_s: float | None, callback: Callable[[], None]) -> None:
        self.when = when
        self.period_s = period_s
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ServiceLoop:
    def __init__(self, *, workers: int = 0, max_queued: int = 0) -> None:
        self._poller = zmq.Poller()
        self._callbacks: dict[Any, Callback] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.exit_code: int | None = None
        self.stop_reason: str | None = None
        self._deadline_sources: list[Callable[[], float]] = []
        self._turn_hooks: list[Callable[[], None]] = []
        self._workers = workers
        self._max_in_flight = workers + max_queued
        self._in_flight = 0
        self._pool: ThreadPoolExecutor | None = None
        self._results: queue.SimpleQueue[tuple[Deferred, Any, BaseException | None]]
        self._results = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.watch(self._wake_r, zmq.POLLIN, self._on_results)

    # ------------------------------------------------------------------ registration

    def watch(self, fd: Any, events: int, callback: Callback) -> None:
        """Call `callback(events)` while `fd` (an int, an object with fileno(), or a
        zmq socket) is ready for `events` (POLLIN=1 | POLLOUT=2). Again: new events."""
        key = fd.fileno() if hasattr(fd, "fileno") and not isinstance(fd, zmq.Socket) else fd
        self._poller.register(key, events)
        self._callbacks[key] = callback

    def unwatch(self, fd: Any) -> None:
        """Stop watching `fd` (nothing happens if it is not watched)."""
        key = fd.fileno() if hasattr(fd, "fileno") and not isinstance(fd, zmq.Socket) else fd
        if self._callbacks.pop(key, None) is not None:
            with contextlib.suppress(KeyError):
                self._poller.unregister(key)

    def every(self, period_s: float, callback: Callable[[], None]) -> Timer:
        if not period_s > 0:
            raise ValueError(f"a timer's period must be positive, got {period_s!r}")
        return self._add_timer(Timer(time.monotonic() + period_s, period_s, callback))

    def after(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return self._add_timer(Timer(time.monotonic() + delay_s, None, callback))

    def _add_timer(self, timer: Timer) -> Timer:
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def add_deadline_source(self, source: Callable[[], float]) -> None:
        """`source()` gives a monotonic time by which the loop must turn again."""
        self._deadline_sources.append(source)

    def on_each_turn(self, hook: Callable[[], None]) -> None:
        """Run `hook()` after every turn (expiring idle connections, say)."""
        self._turn_hooks.append(hook)

    def stop(self, exit_code: int = 0, reason: str = "stopped") -> None:
        """End `run` after the current turn (the first stop wins)."""
        if self.exit_code is None:
            self.exit_code, self.stop_reason = exit_code, reason

    # ------------------------------------------------------------------ workers

    def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        """Run `fn(*args)` in the worker pool; its result (or exception) resolves the
        Deferred on the loop's thread. Raises RequestRefused("busy") when `workers`
        calls run and `max_queued` wait already."""
        if self._workers < 1:
            raise RuntimeError("this ServiceLoop has no worker threads")
        if self._in_flight >= self._max_in_flight:
            raise control.RequestRefused(
                f"busy: {self._in_flight} calls in flight (at most {self._max_in_flight})",
                "busy",
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="call")
        deferred = Deferred()
        self._in_flight += 1
        self._pool.submit(self._work, deferred, fn, args)
        return deferred

    def _work(self, deferred: Deferred, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._results.put((deferred, fn(*args), None))
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller as its error
            self._results.put((deferred, None, exc))
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _on_results(self, _events: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        while True:
            try:
                deferred, value, error = self._results.get_nowait()
            except queue.Empty:
                return
            self._in_flight -= 1
            if error is None:
                deferred.resolve(value)
            else:
                deferred.fail(error)

    def statistics(self) -> dict[str, int]:
        return {"calls_in_flight": self._in_flight, "workers": self._workers}

    # ------------------------------------------------------------------ running

    def run(self) -> int:
        """Turn until `stop`; returns its exit code."""
        while self.exit_code is None:
            self.turn(self._timeout())
        return self.exit_code

    def turn(self, timeout_s: float) -> None:
        """Poll once (at most `timeout_s`), run what is ready, then the due timers."""
        timeout_ms = None if math.isinf(timeout_s) else max(0, math.ceil(timeout_s * 1000))
        for key, events in self._poller.poll(timeout_ms):
            callback = self._callbacks.get(key)
            if callback is not None:  # (unwatched by an earlier callback of this turn)
                callback(events)
        self._run_timers()
        for hook in self._turn_hooks:
            hook()

    def _timeout(self) -> float:
        now = time.monotonic()
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        soonest = self._timers[0][0] if self._timers else math.inf
        for source in self._deadline_sources:
            soonest = min(soonest, source())
        return max(0.0, soonest - now)

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now and self.exit_code is None:
            _, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            if timer.period_s is not None:
                timer.when += timer.period_s
                if timer.when <= now:  # fell behind: no burst of catch-up calls
                    timer.when = now + timer.period_s
                self._add_timer(timer)
            timer.callback()

    def close(self, *, drain_s: float = 0.0) -> None:
        """Wait up to `drain_s` for calls in flight, then close the pool and the pipe."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + drain_s
            for thread in list(threading.enumerate()):
                if thread.name.startswith("call"):
                    thread.join(max(0.0, deadline - time.monotonic()))
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
