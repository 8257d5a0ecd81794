"""The two ways to the beads store, behind one interface: `bd` when it is on PATH
(procs.beads.bd), else the JSONL export (JsonlBackend, here).

Every method either does all it says, read back, or raises StoreError (the store could
not be read or written: an error, never "no work") or Refused (the compare-and-swap
condition did not hold). Neither changes anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from procs.beads import edits
from procs.beads.edits import Refused
from procs.beads.jsonl import JsonlFile, Patch, Snapshot, StoreError, read_snapshot
from procs.beads.ready import Bead, ReadySet, Verdict

__all__ = ["Backend", "JsonlBackend", "ReadBackFailed", "Refused", "StoreError", "View"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ReadBackFailed(StoreError):
    """The write went through but reading the bead back did not show it: the store is
    not what we wrote (someone else wrote it meanwhile, or the tool lied)."""


@dataclass(frozen=True)
class View:
    """One reading of the store: the ready beads in dispatch order, the open beads that
    are held back (with reasons), the beads in progress, those whose status is blocked
    (a bead that failed max_attempts times, say), the malformed lines."""

    source: str
    ready: list[Bead]
    held: list[Verdict] = field(default_factory=list)
    in_progress: list[Bead] = field(default_factory=list)
    stuck: list[Verdict] = field(default_factory=list)  # status `blocked`, with why
    malformed_lines: int = 0
    malformed: list[dict[str, Any]] = field(default_factory=list)
    records: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def dispatchable(self) -> list[Bead]:
        return [b for b in self.ready if not b.assignee]


class Backend(Protocol):
    name: str

    def read(self, *, listing: bool = True) -> View:
        """The store now; `listing=False` may leave out what only a listing shows (the
        blocked beads, for bd: one call fewer per reconcile). Raises StoreError."""
        ...

    def statistics(self) -> dict[str, int]: ...

    def holder(self, bead_id: str) -> tuple[str, str]:
        """(status, assignee) of the bead as the store says now. Raises StoreError."""
        ...

    def claim(self, bead_id: str, actor: str) -> Mapping[str, Any]:
        """Compare-and-swap open & unassigned (or ours) -> in_progress & `actor`, read
        back. Returns the record. Raises Refused, StoreError, ReadBackFailed."""
        ...

    def close(
        self, bead_id: str, actor: str, reason: str, stats: Mapping[str, Any]
    ) -> Mapping[str, Any]: ...

    def fail(
        self, bead_id: str, actor: str, reason: str, attempt: int, max_attempts: int
    ) -> Mapping[str, Any]: ...

    def release(self, bead_id: str, actor: str) -> Mapping[str, Any]: ...


def _last_comment(record: Mapping[str, Any]) -> str:
    comments = record.get("comments")
    if isinstance(comments, list) and comments and isinstance(comments[-1], Mapping):
        return str(comments[-1].get("text") or "")
    return ""


class JsonlBackend:
    """The JSONL export, through JsonlFile (flock, temp file, fsync, rename)."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock = utc_now,
                 file: JsonlFile | None = None) -> None:  # fmt: skip
        self.file = file or JsonlFile(path)
        self.path = self.file.path
        self.clock = clock

    def read(self, *, listing: bool = True) -> View:
        snap = read_snapshot(self.path)
        rules = ReadySet(snap.beads.values(), self.clock())
        notes = [f"bead {d} appears on more than one line: the last one counts"
                 for d in snap.duplicates]  # fmt: skip
        return View(
            source=str(self.path),
            ready=rules.ready(),
            held=rules.held(),
            in_progress=[b for b in snap.beads.values() if b.status == "in_progress"],
            stuck=[
                Verdict(b, (_last_comment(snap.records[b.id]) or "status is blocked",), True)
                for b in snap.beads.values()
                if b.status == "blocked"
            ],
            malformed_lines=snap.malformed_lines,
            malformed=snap.malformed_report(),
            records=snap.records,
            notes=notes,
        )

    def statistics(self) -> dict[str, int]:
        return {"writes": self.file.writes, "write_retries": self.file.retries}

    def holder(self, bead_id: str) -> tuple[str, str]:
        record = read_snapshot(self.path).records.get(bead_id)
        if record is None:
            raise StoreError(f"{self.path}: no bead {bead_id!r}")
        return str(record.get("status") or "open"), str(record.get("assignee") or "")

    def _change(
        self,
        bead_id: str,
        make: Callable[[dict[str, Any]], Patch],
        want: tuple[str, str],
        check: Callable[[Snapshot], None] | None = None,
    ) -> Mapping[str, Any]:
        _, written = self.file.update(bead_id, make, check=check)
        status, assignee = self.holder(bead_id)
        if (status, assignee) != want:
            raise ReadBackFailed(
                f"{self.path}: {bead_id} reads back {status}/{assignee or 'unassigned'}, "
                f"not {want[0]}/{want[1] or 'unassigned'} as written"
            )
        return written

    def claim(self, bead_id: str, actor: str) -> Mapping[str, Any]:
        """Beads' CAS, and one more condition checked under the same lock: the bead is
        still ready (a blocker added since the dispatcher's reading refuses the claim)."""

        def still_ready(snap: Snapshot) -> None:
            bead = snap.beads[bead_id]
            if bead.status == "in_progress" and bead.assignee == actor:
                return  # ours already: the CAS makes this a no-op
            verdict = ReadySet(snap.beads.values(), self.clock()).verdicts[bead_id]
            if not verdict.ready:
                raise Refused(f"{bead_id} is not ready: {'; '.join(verdict.reasons)}")

        return self._change(
            bead_id,
            lambda r: edits.claim(r, actor, self.clock()),
            ("in_progress", actor),
            check=still_ready,
        )

    def close(
        self, bead_id: str, actor: str, reason: str, stats: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return self._change(
            bead_id,
            lambda r: edits.close(r, actor, reason, stats, self.clock()),
            ("closed", actor),
        )

    def fail(
        self, bead_id: str, actor: str, reason: str, attempt: int, max_attempts: int
    ) -> Mapping[str, Any]:
        status = "blocked" if attempt >= max_attempts else "open"
        return self._change(
            bead_id,
            lambda r: edits.fail(
                r, actor, reason, self.clock(), attempt=attempt, max_attempts=max_attempts
            ),
            (status, ""),
        )

    def release(self, bead_id: str, actor: str) -> Mapping[str, Any]:
        return self._change(bead_id, lambda r: edits.release(r, actor, self.clock()), ("open", ""))
