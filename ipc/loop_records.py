"""The loops database's schema and its read view: what `factoryctl loops` reads.

One writer kind, many readers, as the signal journal does it (ipc/journal.py): every
loop process writes its own rows through procs/loop/store.py (LoopStore, one
transaction per transition, WAL so loops never block each other's readers), and
anything else reads here, read-only. The schema lives in this module so that the writer
and the readers agree on it without factoryctl importing a process kind (imports flow
procs -> ipc and supervisor -> ipc only):

    loops    (loop_id PK, bead_id, attempt, phase, seq, state, created_at, updated_at)
             state: the whole FactoryLoopState as JSON; a reader takes from it only the
             keys in STATE_KEYS (counters, workspace, failure reason)
    history  (loop_id, seq, iteration, role, phase_from, phase_to, event, content, ts)
             one row per transition, PK (loop_id, seq)

Why a read view rather than a question to each loop process: a loop's state is in
SQLite anyway (the system of record, DESIGN.md "State"), it is there for loops that
have ended or whose process is down, and reading it costs no process a request. A
reader opens the file with `query_only`, never creates it, and never blocks a writer
(WAL readers take no write lock). `cost` is null until the model gateway counts a
loop's spend where this view can read it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

DB_NAME = "loops.sqlite3"
BUSY_TIMEOUT_S = 5.0
# The FactoryLoopState JSON keys a reader shows (procs/loop/state.py names them).
STATE_KEYS = ("iteration", "greens", "commits", "reverts", "workspace", "reason")

SCHEMA = """
CREATE TABLE IF NOT EXISTS loops (
    loop_id TEXT PRIMARY KEY, bead_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    phase TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    loop_id TEXT NOT NULL, seq INTEGER NOT NULL, iteration INTEGER NOT NULL,
    role TEXT NOT NULL, phase_from TEXT NOT NULL, phase_to TEXT NOT NULL,
    event TEXT NOT NULL, content TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (loop_id, seq)
);
CREATE INDEX IF NOT EXISTS loops_by_bead ON loops (bead_id, attempt);
"""


class LoopRecordsError(Exception):
    """The loops database is missing or is not one; the message says which file."""


class UnknownLoop(LookupError):
    """No loop (and no bead) by that id; the message names it."""


def loops_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where the loops database lives in a state directory."""
    return Path(state_dir) / DB_NAME


class LoopReader:
    """Read-only access to the loops database at `path`.

    Raises LoopRecordsError when there is no file there (no loop has run with this
    state dir yet) or it has no loops table. Each query blocks at most BUSY_TIMEOUT_S.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise LoopRecordsError(f"no loops database at {self.path} (no loop has run yet)")
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._db.execute("PRAGMA query_only=1")
        try:
            self._db.execute("SELECT 1 FROM loops LIMIT 0")
            self._db.execute("SELECT 1 FROM history LIMIT 0")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LoopRecordsError(f"{self.path} is not a loops database: {exc}") from None

    def summaries(self, now: float | None = None) -> list[dict[str, Any]]:
        """One dict per loop, oldest first: loop_id, bead, attempt, phase, iteration,
        greens, commits, reverts, cost (None: not counted here yet), workspace, reason,
        created_at, updated_at, age_s (since created, at `now`, wall-clock seconds)."""
        now = time.time() if now is None else now
        rows = self._db.execute(
            "SELECT loop_id, bead_id, attempt, phase, state, created_at, updated_at "
            "FROM loops ORDER BY created_at, loop_id"
        ).fetchall()
        return [_summary(row, now) for row in rows]

    def loop(self, ident: str, now: float | None = None) -> dict[str, Any]:
        """The summary of loop `ident`, or of bead `ident`'s newest loop, with its
        `history` (a list of dicts: seq, iteration, role, event, from, to, content, ts).
        Raises UnknownLoop."""
        now = time.time() if now is None else now
        columns = "loop_id, bead_id, attempt, phase, state, created_at, updated_at"
        by_id = f"SELECT {columns} FROM loops WHERE loop_id = ?"
        row = self._db.execute(by_id, (ident,)).fetchone()
        if row is None:
            row = self._db.execute(
                f"SELECT {columns} FROM loops WHERE bead_id = ? "
                "ORDER BY attempt DESC, created_at DESC LIMIT 1",
                (ident,),
            ).fetchone()
        if row is None:
            raise UnknownLoop(f"no loop or bead {ident!r} in {self.path}")
        document = _summary(row, now)
        document["history"] = self.history(document["loop_id"])
        return document

    def history(self, loop_id: str) -> list[dict[str, Any]]:
        """The loop's transitions in order (empty for an unknown loop)."""
        rows = self._db.execute(
            "SELECT seq, iteration, role, event, phase_from, phase_to, content, ts "
            "FROM history WHERE loop_id = ? ORDER BY seq",
            (loop_id,),
        ).fetchall()
        keys = ("seq", "iteration", "role", "event", "from", "to", "content", "ts")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LoopReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _summary(row: tuple[Any, ...], now: float) -> dict[str, Any]:
    loop_id, bead, attempt, phase, state_json, created, updated = row
    try:
        state = orjson.loads(state_json)
    except orjson.JSONDecodeError:
        state = {}
    if not isinstance(state, dict):
        state = {}
    document: dict[str, Any] = {"loop_id": loop_id, "bead": bead, "attempt": attempt,
                                "phase": phase}  # fmt: skip
    for key in STATE_KEYS:
        document[key] = state.get(key)
    document["cost"] = None
    document.update(created_at=created, updated_at=updated,
                    age_s=round(max(0.0, now - float(created)), 3))  # fmt: skip
    return document
