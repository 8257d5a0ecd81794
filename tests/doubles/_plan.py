"""TEST DOUBLE scripting shared by the llama.cpp and Anthropic doubles: what each call gets."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    text: str = "ok"
    input_tokens: int = 7
    output_tokens: int = 3


@dataclass(frozen=True)
class Fail:
    status: int = 500
    message: str = "scripted failure"


@dataclass
class Hang:
    """Hold the reply until `release` is set (or `limit_s`): the client's timeout fires first."""

    release: threading.Event = field(default_factory=threading.Event)
    limit_s: float = 10.0
    then: Answer = field(default_factory=Answer)


Step = Answer | Fail | Hang


class Plan:
    """Steps taken in order by incoming calls; `default` once they run out."""

    def __init__(self, steps: list[Step] | None = None, default: Step | None = None) -> None:
        self._steps = list(steps or [])
        self._default = default or Answer()
        self._lock = threading.Lock()
        self.calls = 0

    def next(self) -> Step:
        with self._lock:
            self.calls += 1
            return self._steps.pop(0) if self._steps else self._default

    def extend(self, steps: list[Step]) -> None:
        with self._lock:
            self._steps.extend(steps)

    def set_default(self, step: Step) -> None:
        with self._lock:
            self._default = step

    def release_all(self) -> None:
        with self._lock:
            for step in [*self._steps, self._default]:
                if isinstance(step, Hang):
                    step.release.set()
