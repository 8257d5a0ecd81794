"""What the synapse knows of each generation, for its decisions and `status`.

A `GenerationRecord` lives on the service loop's thread; the worker that bisects and
starts mutators adds children under `lock`, and reads `cancelled` between steps, so a
generation stopped while it is still being started stops every mutator it got.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

LIVE = ("bisecting", "swarming", "stopping")


@dataclass
class GenerationRecord:
    id: str
    file: str
    error: str
    context_hash: str
    started_at: float = field(default_factory=time.time)
    state: str = "bisecting"  # -> swarming -> stopping -> done
    suspects: int = 0
    culprit: str = ""
    bisect_rounds: int = 0
    bisect_runs: int = 0
    bisect_workers: int = 0
    bisect_ms: float = 0.0
    bisect_error: str = ""
    size: int = 0
    children: list[str] = field(default_factory=list)
    spawned: bool = False  # every mutator it will get has been started (or failed to)
    ended: str = ""  # why it ended: "fix landed ...", "golden moved ...", "no fix", ...
    stop_ms: float | None = None  # from the signal that ended it to its last mutator gone
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def group(self) -> str:
        return f"synapse-{self.id}"

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def add_child(self, child_id: str) -> bool:
        """Record a started mutator; False when the generation was stopped meanwhile
        (the caller stops that mutator itself)."""
        with self.lock:
            self.children.append(child_id)
            return not self.cancelled.is_set()

    def child_ids(self) -> list[str]:
        with self.lock:
            return list(self.children)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "state": self.state, "file": self.file,
                "error": self.error[:300], "context_hash": self.context_hash,
                "started_at": self.started_at, "suspects": self.suspects,
                "culprit": self.culprit, "bisect": {"rounds": self.bisect_rounds,
                "runs": self.bisect_runs, "workers": self.bisect_workers,
                "ms": round(self.bisect_ms), "error": self.bisect_error},
                "size": self.size, "children": self.child_ids(), "ended": self.ended,
                "stop_ms": None if self.stop_ms is None else round(self.stop_ms, 1)}  # fmt: skip
