"""What one prompt turn produced, collected from session/update and the client's handlers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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


@dataclass
class TurnRecord:
    """Every update of a turn, in arrival order (`updates`), plus the parts sorted out."""

    message_chunks: list[str] = field(default_factory=list)
    thought_chunks: list[str] = field(default_factory=list)
    tool_calls: dict[str, ToolCallRecord] = field(default_factory=dict)
    plan: list[dict[str, Any]] = field(default_factory=list)
    permissions: list[PermissionRecord] = field(default_factory=list)
    files: list[FileRecord] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def message(self) -> str:
        return "".join(self.message_chunks)

    @property
    def thoughts(self) -> str:
        return "".join(self.thought_chunks)

    def add_update(self, update: dict[str, Any]) -> None:
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
        data = asdict(self)
        data["message"] = self.message
        data["thoughts"] = self.thoughts
        return data
