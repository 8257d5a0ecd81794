"""The dispatcher's own records in SQLite (<state_dir>/dispatcher.sqlite3): each loop it
claimed a bead for, and each bead's failures and backoff.

    dispatches  (loop_id PK, bead_id, attempt, generation, state, outcome, reason,
                 resumes, resumed_at, child_id, created_at, updated_at)
                state: claiming -> running -> ended; written BEFORE the call it records
                (a `claiming` row before asking beads to claim), so a dispatcher killed
                between the two finds the row at restart and settles it with beads'
                answer (policy.settle)
    backoff     (bead_id PK, failures, not_before): wall-clock seconds
    paused      (one row while an operator has paused dispatching: reason, at)

The beads service keeps the claims and the loop processes keep their state: these rows
are the dispatcher's memory of what it asked for, never the system of record of either.
One connection, used by the dispatcher's one worker thread; WAL, each write one short
transaction, busy waits bounded by BUSY_TIMEOUT_S.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from ipc import paths
from procs.dispatcher.policy import Dispatch

DB_NAME = "dispatcher.sqlite3"
BUSY_TIMEOUT_S = 10.0
LIVE = ("claiming", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatches (
    loop_id TEXT PRIMARY KEY, bead_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    generation INTEGER, state TEXT NOT NULL CHECK (state IN ('claiming','running','ended')),
    outcome TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
    resumes INTEGER NOT NULL DEFAULT 0, child_id TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, updated_at REAL NOT NULL, resumed_at REAL
);
CREATE INDEX IF NOT EXISTS dispatches_by_bead ON dispatches (bead_id, attempt);
CREATE TABLE IF NOT EXISTS backoff (
    bead_id TEXT PRIMARY KEY, failures INTEGER NOT NULL, not_before REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS paused (
    id INTEGER PRIMARY KEY CHECK (id = 1), reason TEXT NOT NULL, at REAL NOT NULL
);
"""
_COLUMNS = "loop_id, bead_id, attempt, generation, state, resumes, child_id, resumed_at"


class DispatchRecords:
    """The records at `path` (made 0600; its directory must exist)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        paths.private_sqlite(path)
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(dispatches)")}
        if "resumed_at" not in columns:  # a file from before resumes were timed
            self._db.execute("ALTER TABLE dispatches ADD COLUMN resumed_at REAL")

    def close(self) -> None:
        self._db.close()

    def live(self) -> list[Dispatch]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM dispatches WHERE state IN ('claiming', 'running') "
            "ORDER BY created_at, loop_id"
        )
        return [Dispatch(*row) for row in rows]

    def get(self, loop_id: str) -> Dispatch | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM dispatches WHERE loop_id = ?", (loop_id,)
        ).fetchone()
        return None if row is None else Dispatch(*row)

    def attempts(self, bead_id: str) -> list[int]:
        rows = self._db.execute("SELECT attempt FROM dispatches WHERE bead_id = ?", (bead_id,))
        return [int(row[0]) for row in rows]

    def begin(self, loop_id: str, bead_id: str, attempt: int, *, state: str = "claiming",
              generation: int | None = None) -> Dispatch:  # fmt: skip
        now = time.time()
        self._db.execute(
            "INSERT INTO dispatches (loop_id, bead_id, attempt, generation, state, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (loop_id, bead_id, attempt, generation, state, now, now),
        )
        return Dispatch(loop_id, bead_id, attempt, generation, state)

    def update(self, loop_id: str, **fields: Any) -> None:
        """Set columns of a row (state, generation, child_id, resumes, resumed_at, outcome,
        reason)."""
        allowed = {"state", "generation", "child_id", "resumes", "resumed_at", "outcome",
                   "reason"}  # fmt: skip
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(
            f"UPDATE dispatches SET {sets}, updated_at = ? WHERE loop_id = ?",
            (*fields.values(), time.time(), loop_id),
        )

    def end(self, loop_id: str, outcome: str, reason: str = "") -> None:
        self.update(loop_id, state="ended", outcome=outcome, reason=reason)

    def failed(self, bead_id: str, delay_s: float) -> int:
        """Count a failure of `bead_id` and hold it back `delay_s`; returns its failures."""
        self._db.execute(
            "INSERT INTO backoff (bead_id, failures, not_before) VALUES (?, 1, ?) "
            "ON CONFLICT (bead_id) DO UPDATE SET failures = failures + 1, "
            "not_before = excluded.not_before",
            (bead_id, time.time() + delay_s),
        )
        return self.failures(bead_id)

    def failures(self, bead_id: str) -> int:
        row = self._db.execute(
            "SELECT failures FROM backoff WHERE bead_id = ?", (bead_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def hold_back(self, bead_id: str, until: float) -> None:
        """Hold `bead_id` back until `until` (wall clock) without counting a failure."""
        self._db.execute(
            "INSERT INTO backoff (bead_id, failures, not_before) VALUES (?, 0, ?) "
            "ON CONFLICT (bead_id) DO UPDATE SET not_before = excluded.not_before",
            (bead_id, until),
        )

    def not_before(self) -> dict[str, float]:
        now = time.time()
        rows = self._db.execute(
            "SELECT bead_id, not_before FROM backoff WHERE not_before > ?", (now,)
        )
        return {str(bead): float(until) for bead, until in rows}

    def pause(self, reason: str) -> dict[str, Any]:
        """Start no new loops until `resume` (kept across restarts); a second pause only
        replaces the reason. Returns the pause."""
        self._db.execute(
            "INSERT INTO paused (id, reason, at) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET reason = excluded.reason",
            (reason, time.time()),
        )
        paused = self.paused()
        assert paused is not None
        return paused

    def resume(self) -> bool:
        """Dispatch again; False when it was not paused."""
        return self._db.execute("DELETE FROM paused").rowcount > 0

    def paused(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT reason, at FROM paused").fetchone()
        return None if row is None else {"reason": str(row[0]), "at": float(row[1])}

    def statistics(self) -> dict[str, int]:
        out = {state: 0 for state in ("claiming", "running", "ended")}
        for state, n in self._db.execute("SELECT state, count(*) FROM dispatches GROUP BY state"):
            out[str(state)] = int(n)
        for outcome, n in self._db.execute(
            "SELECT outcome, count(*) FROM dispatches WHERE state = 'ended' GROUP BY outcome"
        ):
            out[f"ended_{outcome or 'unknown'}"] = int(n)
        return out

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT loop_id, bead_id, attempt, generation, state, outcome, reason, resumes, "
            "child_id, created_at, updated_at FROM dispatches ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        keys = ("loop_id", "bead_id", "attempt", "generation", "state", "outcome", "reason",
                "resumes", "child_id", "created_at", "updated_at")  # fmt: skip
        return [dict(zip(keys, row, strict=True)) for row in rows]
