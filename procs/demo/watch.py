"""The demo's progress lines, read from where factoryctl reads them.

Each `poll()` reads, once: the beads file (a bead claimed, closed), the loops database
through ipc.loop_records (a loop made, each phase change from its history), and the
merge queue's `queue` call on its control socket (a patch landed or rejected). It
returns the lines for what changed since the last poll, and keeps what the summary
needs (when each bead was dispatched and closed, where each patch landed).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc import control, loop_records, paths

CALL_TIMEOUT_S = 5.0


@dataclass
class BeadSeen:
    status: str = "open"
    dispatched_at: float | None = None
    closed_at: float | None = None
    loop_id: str = ""


@dataclass
class Watcher:
    beads_file: Path
    state_dir: Path
    runtime: Path
    started: float = field(default_factory=time.monotonic)
    beads: dict[str, BeadSeen] = field(default_factory=dict)
    loops: dict[str, dict[str, Any]] = field(default_factory=dict)  # last summaries
    history_seen: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # patch id -> decision
    _reader: loop_records.LoopReader | None = None

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:5.1f}s]"

    def poll(self) -> list[str]:
        return [*self._queue(), *self._loops(), *self._beads()]  # landed, Pushed, closed

    def _beads(self) -> list[str]:
        lines = []
        try:
            records = [json.loads(line) for line in self.beads_file.read_text().splitlines()
                       if line.strip()]  # fmt: skip
        except (OSError, ValueError):
            return []  # being rewritten by the beads service: read it next time
        for record in records:
            seen = self.beads.setdefault(record["id"], BeadSeen())
            status = str(record.get("status") or "open")
            if status == seen.status:
                continue
            if status == "closed":
                seen.closed_at = time.monotonic()
                lines.append(f"{self.stamp()} {record['id']} closed: its commit is on golden")
            elif status == "in_progress":
                who = record.get("assignee") or "a loop"
                lines.append(f"{self.stamp()} {record['id']} dispatched: claimed by {who}")
            seen.status = status
        return lines

    def _loops(self) -> list[str]:
        if self._reader is None:
            try:
                self._reader = loop_records.LoopReader(loop_records.loops_path(self.state_dir))
            except loop_records.LoopRecordsError:
                return []  # no loop has run yet
        lines = []
        for loop in self._reader.summaries():
            loop_id, bead = loop["loop_id"], loop["bead"]
            if loop_id not in self.loops:
                seen = self.beads.setdefault(bead, BeadSeen())
                seen.loop_id = loop_id
                if seen.dispatched_at is None:
                    seen.dispatched_at = time.monotonic()
                lines.append(f"{self.stamp()} {bead} loop {loop_id} running")
            self.loops[loop_id] = loop
            history = self._reader.history(loop_id)
            for entry in history[self.history_seen.get(loop_id, 0) :]:
                lines.append(f"{self.stamp()} {bead} {entry['from']} -> {entry['to']}  "
                             f"({entry['role']}: {entry['event']})")  # fmt: skip
                if entry["to"] == "failed":  # the reason's first line; the rest is output
                    reason = str(loop.get("reason") or entry["content"]).strip() or "-"
                    lines.append(f"{self.stamp()} {bead} loop {loop_id} failed: "
                                 f"{reason.splitlines()[0][:200]}")  # fmt: skip
            self.history_seen[loop_id] = len(history)
        return lines

    def _queue(self) -> list[str]:
        try:
            result = control.call(paths.control_socket(self.runtime, "merge_queue"), "queue",
                                  {}, timeout=CALL_TIMEOUT_S)  # fmt: skip
        except control.ControlError:
            return []  # restarting, or busy: ask again next time
        lines = []
        for decision in result.get("recent") or []:
            patch = str(decision.get("patch_id"))
            if patch in self.decisions:
                continue
            self.decisions[patch] = decision
            bead = self._bead_of(decision)
            if decision.get("state") == "accepted":
                landed = str(decision.get("landed_hash") or "")[:10]
                lines.append(f"{self.stamp()} merge queue: {bead} landed on golden as {landed}")
            else:
                why = f"{decision.get('reason')} {decision.get('detail') or ''}"
                lines.append(f"{self.stamp()} merge queue: {bead} rejected: {why}")
        return lines

    def _bead_of(self, decision: dict[str, Any]) -> str:
        group, key = str(decision.get("group") or ""), str(decision.get("key") or "")
        if group.startswith("synapse-") and key.startswith(f"{group}-"):
            return f"the swarm's fix (variant {key[len(group) + 1 :]})"
        return str(decision.get("bead_id") or key or decision.get("patch_id"))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
