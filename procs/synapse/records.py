"""What the synapse knows of each generation, for its decisions and `status`.

A `GenerationRecord` lives on the service loop's thread; the worker that bisects and
starts mutators adds children under `lock`, and reads `cancelled` between steps, so a
generation stopped while it is still being started stops every mutator it got.
`snapshot()` is every field, for the synapse's SQLite store (procs/synapse/store.py);
`restore()` makes the record again from it after a restart (`resumed` counts those).
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
    resumed: int = 0  # synapse restarts that found it live and took it up again
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

    def snapshot(self) -> dict[str, Any]:
        """Every field but the lock and the event (a stopping one is `cancelled`)."""
        with self.lock:
            out = {f: getattr(self, f) for f in _STORED}
            out["children"] = list(self.children)
        return out

    @classmethod
    def restore(cls, raw: dict[str, Any]) -> GenerationRecord:
        """A record from `snapshot()`; raises KeyError, TypeError or ValueError when a
        field is missing or of the wrong type."""
        record = cls(str(raw["id"]), str(raw["file"]), str(raw["error"]), str(raw["context_hash"]))
        for name in _STORED[4:]:
            if name in raw:
                setattr(record, name, _typed(name, raw[name]))
        record.children = [str(c) for c in raw.get("children") or []]
        if record.state in ("stopping", "done"):
            record.cancelled.set()
        return record

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "state": self.state, "file": self.file,
                "error": self.error[:300], "context_hash": self.context_hash,
                "started_at": self.started_at, "suspects": self.suspects,
                "culprit": self.culprit, "bisect": {"rounds": self.bisect_rounds,
                "runs": self.bisect_runs, "workers": self.bisect_workers,
                "ms": round(self.bisect_ms), "error": self.bisect_error},
                "size": self.size, "children": self.child_ids(), "ended": self.ended,
                "stop_ms": None if self.stop_ms is None else round(self.stop_ms, 1),
                "resumed": self.resumed}  # fmt: skip


_STORED = ("id", "file", "error", "context_hash", "started_at", "state", "suspects", "culprit",
           "bisect_rounds", "bisect_runs", "bisect_workers", "bisect_ms", "bisect_error",
           "size", "spawned", "ended", "stop_ms", "resumed")  # fmt: skip
_TYPES: dict[str, type] = {"started_at": float, "suspects": int, "bisect_rounds": int,
                           "bisect_runs": int, "bisect_workers": int, "bisect_ms": float,
                           "size": int, "spawned": bool, "resumed": int}  # fmt: skip


def _typed(name: str, value: Any) -> Any:
    if name == "stop_ms":
        return None if value is None else float(value)
    kind = _TYPES.get(name, str)
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r:.40}")
        return value
    if name == "state" and value not in (*LIVE, "done"):
        raise ValueError(f"state must be one of {(*LIVE, 'done')}, got {value!r:.40}")
    return kind(value)
