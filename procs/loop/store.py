"""LoopStore: each loop's state and history in SQLite, one transaction per transition.

The system of record for loops (DESIGN.md "State"). The database lives in the state
directory, 0600 whatever the umask, in WAL mode with synchronous=FULL (a transition is
durable once `advance` returns, even across a power loss). Every loop process of a
state dir writes the same file (WAL: one writer at a time, each transaction short and
BEGIN IMMEDIATE, `busy_timeout_s` the longest wait; readers never block). The schema is
ipc.loop_records.SCHEMA, so that `factoryctl loops` reads it without importing procs.
Two tables:

    loops    one row per loop: identity columns for queries (bead, phase, seq) and the
             whole FactoryLoopState as JSON
    history  one row per transition, keyed (loop_id, seq)

`advance(state, event, now)` computes transition(state, event) and writes the new state
and its HistoryEntry in ONE transaction, as a compare-and-swap on seq: the row must still
be at `state.seq`. Replaying an advance that already committed (a loop killed after the
commit but before it knew) is a no-op that returns the stored state, so no history entry
is ever doubled; any other mismatch raises StaleState. A process killed mid-transaction
leaves the previous transition, whole (SQLite's atomic commit). Every call blocks at most
`busy_timeout_s` on another writer's lock.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from ipc import loop_records, paths
from procs.loop.events import LoopEvent
from procs.loop.state import FactoryLoopState, FactoryPhase, HistoryEntry, LoopLimits
from procs.loop.transition import transition

DEFAULT_BUSY_TIMEOUT_S = 10.0


class LoopNotFound(KeyError):
    """No loop with that id in the store."""


class LoopExists(ValueError):
    """create() for a loop id already stored with a different identity."""


class StaleState(RuntimeError):
    """advance() from a state the store has moved past (or never had): another writer,
    or a caller holding an old copy. The message gives both sequence numbers."""


class LoopStore:
    """The loops database at `path` (its directory is made 0700 if missing)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        paths.private_sqlite(path)
        self.path = path
        self._db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(loop_records.SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LoopStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def create(self, state: FactoryLoopState, now: float) -> FactoryLoopState:
        """Store a new loop at seq 0, or return the stored one when it has the same
        identity (a restarted loop calling create again). Raises LoopExists otherwise."""
        with self._transaction():
            row = self._db.execute(
                "SELECT state FROM loops WHERE loop_id = ?", (state.loop_id,)
            ).fetchone()
            if row is not None:
                stored = _decode(row[0])
                mine = (state.bead_id, state.attempt, state.workspace)
                if (stored.bead_id, stored.attempt, stored.workspace) != mine:
                    raise LoopExists(
                        f"loop {state.loop_id} is stored for bead {stored.bead_id} attempt "
                        f"{stored.attempt} in {stored.workspace}, not {mine}"
                    )
                return stored
            if state.seq != 0:
                raise ValueError(f"a new loop starts at seq 0, got {state.seq}")
            self._db.execute(
                "INSERT INTO loops (loop_id, bead_id, attempt, phase, seq, state, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                (state.loop_id, state.bead_id, state.attempt, state.phase.value,
                 _encode(state), now, now),
            )  # fmt: skip
        return state

    def advance(self, state: FactoryLoopState, event: LoopEvent, now: float) -> FactoryLoopState:
        """transition(state, event), persisted with its history entry in one transaction.

        Raises IllegalTransition (nothing written), LoopNotFound, StaleState. Replaying
        the advance that produced the stored state returns it and writes nothing.
        """
        new = transition(state, event)
        entry = HistoryEntry(
            loop_id=state.loop_id, seq=new.seq, iteration=new.iteration, role=event.ROLE,
            phase_from=state.phase, phase_to=new.phase, event=type(event).__name__,
            content=event.text(), ts=now,
        )  # fmt: skip
        with self._transaction():
            row = self._db.execute(
                "SELECT seq, state FROM loops WHERE loop_id = ?", (state.loop_id,)
            ).fetchone()
            if row is None:
                raise LoopNotFound(state.loop_id)
            stored_seq, stored_json = row
            if stored_seq == new.seq and self._same_entry(entry):
                return _decode(stored_json)
            if stored_seq != state.seq:
                raise StaleState(
                    f"loop {state.loop_id}: advancing from seq {state.seq} but the store "
                    f"is at seq {stored_seq}"
                )
            self._db.execute(
                "INSERT INTO history (loop_id, seq, iteration, role, phase_from, phase_to, "
                "event, content, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.loop_id, entry.seq, entry.iteration, entry.role, entry.phase_from.value,
                 entry.phase_to.value, entry.event, entry.content, entry.ts),
            )  # fmt: skip
            self._db.execute(
                "UPDATE loops SET phase = ?, seq = ?, state = ?, updated_at = ? WHERE loop_id = ?",
                (new.phase.value, new.seq, _encode(new), now, new.loop_id),
            )
        return new

    def load(self, loop_id: str) -> FactoryLoopState:
        """The loop's last persisted state; raises LoopNotFound."""
        row = self._db.execute("SELECT state FROM loops WHERE loop_id = ?", (loop_id,)).fetchone()
        if row is None:
            raise LoopNotFound(loop_id)
        return _decode(row[0])

    def history(self, loop_id: str) -> list[HistoryEntry]:
        """The loop's transitions in order (empty for an unknown loop)."""
        rows = self._db.execute(
            "SELECT loop_id, seq, iteration, role, phase_from, phase_to, event, content, ts "
            "FROM history WHERE loop_id = ? ORDER BY seq",
            (loop_id,),
        ).fetchall()
        return [
            HistoryEntry(lid, seq, it, role, FactoryPhase(src), FactoryPhase(dst), ev, text, ts)
            for lid, seq, it, role, src, dst, ev, text, ts in rows
        ]

    def created_at(self, loop_id: str) -> float:
        """When create() first stored the loop (wall-clock seconds); LoopNotFound."""
        row = self._db.execute(
            "SELECT created_at FROM loops WHERE loop_id = ?", (loop_id,)
        ).fetchone()
        if row is None:
            raise LoopNotFound(loop_id)
        return float(row[0])

    def summaries(self, now: float) -> list[dict[str, Any]]:
        """One row per loop, oldest first, for `factoryctl loops`: loop_id, bead, attempt,
        phase, iteration, greens, commits, reverts, workspace, reason, age_s."""
        rows = self._db.execute("SELECT state, created_at FROM loops ORDER BY created_at, loop_id")
        out = []
        for text, created in rows:
            state = _decode(text)
            out.append({
                "loop_id": state.loop_id, "bead": state.bead_id, "attempt": state.attempt,
                "phase": state.phase.value, "iteration": state.iteration,
                "greens": state.greens, "commits": state.commits, "reverts": state.reverts,
                "workspace": state.workspace, "reason": state.reason,
                "age_s": max(0.0, now - float(created)),
            })  # fmt: skip
        return out

    def statistics(self) -> dict[str, int]:
        """Loops by phase (every phase listed, zeros included) and history entries."""
        counts = dict.fromkeys((phase.value for phase in FactoryPhase), 0)
        for phase, count in self._db.execute("SELECT phase, count(*) FROM loops GROUP BY phase"):
            counts[phase] = int(count)
        (entries,) = self._db.execute("SELECT count(*) FROM history").fetchone()
        return {**counts, "history_entries": int(entries)}

    def loop_ids(self) -> list[str]:
        """Every stored loop id, oldest first."""
        rows = self._db.execute("SELECT loop_id FROM loops ORDER BY created_at, loop_id")
        return [row[0] for row in rows]

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file ("ok" when sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def _same_entry(self, entry: HistoryEntry) -> bool:
        row = self._db.execute(
            "SELECT phase_from, phase_to, event FROM history WHERE loop_id = ? AND seq = ?",
            (entry.loop_id, entry.seq),
        ).fetchone()
        return row is not None and tuple(row) == (
            entry.phase_from.value, entry.phase_to.value, entry.event,
        )  # fmt: skip

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE (the write lock up front, so no upgrade deadlock) ... COMMIT, or
    ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _encode(state: FactoryLoopState) -> str:
    return orjson.dumps(dataclasses.asdict(state)).decode()


def _decode(text: str) -> FactoryLoopState:
    fields: dict[str, Any] = orjson.loads(text)
    fields["limits"] = LoopLimits(**fields["limits"])
    fields["phase"] = FactoryPhase(fields["phase"])
    return FactoryLoopState(**fields)


def state_path(state_dir: Path) -> Path:
    """Where the loops database lives in a state directory (ipc.loop_records says)."""
    return loop_records.loops_path(state_dir)
