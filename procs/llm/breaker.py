"""A circuit breaker per endpoint (closed / open / half-open) that loses no request.

Seed 003's bug: requests buffered while the circuit was open were never delivered when it
closed. Here a request that meets an open circuit waits (is buffered) inside `admit()`,
bounded by its own deadline. After `reset_after_s` exactly one waiter goes through as the
half-open probe; when it succeeds the circuit closes and every buffered request is released
in the same instant; when it fails the circuit re-opens and the rest keep waiting. A
request whose deadline passes first gets CircuitOpen: each request is either sent or told
why not, none is dropped silently.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from procs.llm.errors import CircuitOpen


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Admission:
    """A pass through the breaker; `probe` marks the single half-open trial call."""

    probe: bool
    waited_s: float


class CircuitBreaker:
    """Thread-safe breaker; `admit()` blocks while open, at most until `deadline`."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` times the open -> half-open reset only (tests pass a manual clock and
        `poke()` after moving it); request deadlines are always time.monotonic()."""
        if failure_threshold < 1:
            raise ValueError(f"breaker {name!r}: failure_threshold must be >= 1")
        if reset_after_s <= 0:
            raise ValueError(f"breaker {name!r}: reset_after_s must be > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._cond = threading.Condition()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self._waiting = 0
        self._counts = {"opened": 0, "closed": 0, "buffered": 0, "released": 0, "expired": 0}

    @property
    def state(self) -> BreakerState:
        with self._cond:
            return self._state

    def admit(self, *, deadline: float) -> Admission:
        """Return once the request may be sent; raise CircuitOpen at `deadline` (monotonic)."""
        began = time.monotonic()
        with self._cond:
            buffered = False
            while True:
                now = time.monotonic()
                if self._state is BreakerState.CLOSED:
                    return self._admitted(began, now, buffered, probe=False)
                reset_in = self._opened_at + self.reset_after_s - self._clock()
                if self._state is BreakerState.OPEN and reset_in <= 0:
                    self._state = BreakerState.HALF_OPEN
                if self._state is BreakerState.HALF_OPEN and not self._probe_out:
                    self._probe_out = True
                    return self._admitted(began, now, buffered, probe=True)
                if now >= deadline:
                    self._counts["expired"] += 1
                    if buffered:
                        self._waiting -= 1
                    raise CircuitOpen(
                        f"circuit for endpoint {self.name!r} is {self._state.value}; "
                        f"request waited {now - began:.2f}s for it to close and gave up"
                    )
                if not buffered:
                    buffered = True
                    self._waiting += 1
                    self._counts["buffered"] += 1
                pause = deadline - now
                if self._state is BreakerState.OPEN:
                    pause = min(pause, reset_in)
                self._cond.wait(max(pause, 0.0))

    def _admitted(self, began: float, now: float, buffered: bool, *, probe: bool) -> Admission:
        if buffered:
            self._waiting -= 1
            self._counts["released"] += 1
        return Admission(probe=probe, waited_s=now - began)

    def record_success(self, admission: Admission) -> None:
        """The endpoint answered: close the circuit and release every buffered request."""
        with self._cond:
            if admission.probe:
                self._probe_out = False
            self._failures = 0
            if self._state is not BreakerState.CLOSED:
                self._state = BreakerState.CLOSED
                self._counts["closed"] += 1
            self._cond.notify_all()

    def record_failure(self, admission: Admission) -> None:
        """The endpoint failed (down, timeout, 5xx): count it, open past the threshold."""
        with self._cond:
            if admission.probe:
                self._probe_out = False
            self._failures += 1
            reopen = self._state is BreakerState.HALF_OPEN and admission.probe
            if reopen or (
                self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
            ):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._counts["opened"] += 1
            self._cond.notify_all()

    def record_neutral(self, admission: Admission) -> None:
        """The call never reached the endpoint (bad request, no key): change nothing."""
        with self._cond:
            if admission.probe:
                self._probe_out = False
                self._cond.notify_all()

    def poke(self) -> None:
        """Wake buffered requests to look at the clock again (after a manual clock moved)."""
        with self._cond:
            self._cond.notify_all()

    def statistics(self) -> dict[str, object]:
        with self._cond:
            return {
                "state": self._state.value,
                "consecutive_failures": self._failures,
                "waiting": self._waiting,
                **self._counts,
            }
