"""What one prompt turn produced, collected from session/update and the client's handlers.

The record is bounded (RecordLimits): an agent decides how many updates it sends and how
big they are, so a chatty or hostile one could otherwise grow our memory without limit.
It keeps the FIRST updates of a turn, up to a count and a byte budget, and only counts the
rest (`dropped_updates`). First, not newest: the kept record is then an unbroken prefix
of the turn, and an agent cannot push what it did earlier (the tool calls it made, the
permissions it asked for) out of the record by talking more afterwards. What it costs: a
turn that outgrows the budget loses its last message chunks, and `dropped_updates` > 0
says the record is incomplete. The defaults are far above a normal turn (opencode sends
one update per streamed chunk of text; 20,000 is a very long turn). Permission decisions
and file operations (`decisions`) have their own budget, so that flooding updates cannot
crowd them out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

DEFAULT_MAX_UPDATES = 20_000
DEFAULT_MAX_UPDATE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_DECISIONS = 2_000
DEFAULT_MAX_DECISION_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RecordLimits:
    """How much of one turn a TurnRecord keeps. Sizes are the entries' JSON bytes; the
    Python objects that hold them take a small multiple of that."""

    max_updates: int = DEFAULT_MAX_UPDATES
    max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES
    max_decisions: int = DEFAULT_MAX_DECISIONS  # permission decisions + file operations
    max_decision_bytes: int = DEFAULT_MAX_DECISION_BYTES

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RecordLimits.{spec.name} must be an integer >= 1, got {value!r}")


@dataclass
class _Budget:
    """Admits entries while both the count and the byte budget hold, then none at all."""

    max_count: int
    max_bytes: int
    count: int = 0
    bytes: int = 0
    dropped: int = 0

    def admit(self, size: int) -> bool:
        fits = self.count < self.max_count and self.bytes + size <= self.max_bytes
        if self.dropped or not fits:
            self.dropped += 1
            return False
        self.count += 1
        self.bytes += size
        return True


@dataclass
class ToolCallRecord:
    tool_call_id: str
    title: str = ""
    kind: str = ""
    status: str = ""
    locations: list[str] = field(default_factory=list)
    raw_input: Any = None
    raw_output: Any = None


@dataclass(frozen=True)
class PermissionRecord:
    tool_call_id: str
    kind: str
    paths: list[str]
    outcome: str  # "allowed" | "refused" | "cancelled"
    reason: str


@dataclass(frozen=True)
class FileRecord:
    op: str  # "read" | "write"
    path: str
    ok: bool
    detail: str = ""
    refused: bool = False  # the role's rules refused it (not an I/O error)


class TurnRecord:
    """The first updates of a turn, in arrival order (`updates`), the parts sorted out of
    them, and our handlers' decisions; each bounded by `limits`."""

    def __init__(self, limits: RecordLimits | None = None) -> None:
        self.limits = limits or RecordLimits()
        self.message_chunks: list[str] = []
        self.thought_chunks: list[str] = []
        self.tool_calls: dict[str, ToolCallRecord] = {}
        self.plan: list[dict[str, Any]] = []
        self.permissions: list[PermissionRecord] = []
        self.files: list[FileRecord] = []
        self.updates: list[dict[str, Any]] = []
        self._updates = _Budget(self.limits.max_updates, self.limits.max_update_bytes)
        self._decisions = _Budget(self.limits.max_decisions, self.limits.max_decision_bytes)

    @property
    def message(self) -> str:
        return "".join(self.message_chunks)

    @property
    def thoughts(self) -> str:
        return "".join(self.thought_chunks)

    @property
    def dropped_updates(self) -> int:
        """Updates of this turn not kept (the budget was full when they came)."""
        return self._updates.dropped

    @property
    def dropped_decisions(self) -> int:
        """Permission decisions and file operations not kept."""
        return self._decisions.dropped

    @property
    def update_bytes(self) -> int:
        """JSON bytes of the updates kept."""
        return self._updates.bytes

    def add_update(self, update: dict[str, Any]) -> bool:
        """Keep one session/update (as JSON) if the budget allows; False if dropped."""
        if self._updates.dropped:  # full: spare the serialisation
            self._updates.dropped += 1
            return False
        if not self._updates.admit(len(orjson.dumps(update))):
            return False
        self.updates.append(update)
        kind = update.get("sessionUpdate")
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            content = update.get("content") or {}
            text = content.get("text", "") if isinstance(content, dict) else ""
            target = self.message_chunks if kind == "agent_message_chunk" else self.thought_chunks
            target.append(text)
        elif kind in ("tool_call", "tool_call_update"):
            self._tool_call(update)
        elif kind == "plan":
            self.plan = list(update.get("entries") or [])
        return True

    def add_permission(self, permission: PermissionRecord) -> bool:
        """Keep one permission decision if the decisions budget allows."""
        if not self._decisions.admit(len(orjson.dumps(permission))):
            return False
        self.permissions.append(permission)
        return True

    def add_file(self, operation: FileRecord) -> bool:
        """Keep one fs/* operation if the decisions budget allows."""
        if not self._decisions.admit(len(orjson.dumps(operation))):
            return False
        self.files.append(operation)
        return True

    def refusals(self) -> list[str]:
        """The reasons of what the role refused in this turn (permissions, then file
        operations), in order: what the loop feeds back to the next turn."""
        found = [p.reason for p in self.permissions if p.outcome == "refused"]
        return found + [f.detail for f in self.files if f.refused]

    def _tool_call(self, update: dict[str, Any]) -> None:
        call_id = str(update.get("toolCallId", ""))
        record = self.tool_calls.setdefault(call_id, ToolCallRecord(call_id))
        for key, attr in (("title", "title"), ("kind", "kind"), ("status", "status")):
            if update.get(key):
                setattr(record, attr, update[key])
        if update.get("locations"):
            record.locations = [loc.get("path", "") for loc in update["locations"]]
        if update.get("rawInput"):
            record.raw_input = update["rawInput"]
        if "rawOutput" in update:
            record.raw_output = update["rawOutput"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message, "thoughts": self.thoughts,
            "message_chunks": list(self.message_chunks),
            "thought_chunks": list(self.thought_chunks),
            "tool_calls": {key: asdict(call) for key, call in self.tool_calls.items()},
            "plan": list(self.plan),
            "permissions": [asdict(p) for p in self.permissions],
            "files": [asdict(f) for f in self.files],
            "updates": list(self.updates),
            "dropped_updates": self.dropped_updates,
            "dropped_decisions": self.dropped_decisions,
            "limits": asdict(self.limits),
        }  # fmt: skip
