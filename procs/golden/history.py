"""The golden master's record: every move and every suite verdict, in SQLite (WAL).

    history = GoldenHistory(path)           # <state_dir>/golden.sqlite3, made 0600
    history.record_move(hash, previous, reason, patch_id=, now=)
    history.record_run(hash, green, output, source=, duration_ms=, now=) -> Color
    history.color() -> Color                # green | red | unknown, and since when

Thread-safe: the service's loop reads while its workers write; every method holds the
history's own lock around its connection. A crash loses at most the record being
written: each is one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from ipc import paths

T = TypeVar("T")
P = ParamSpec("P")

MAX_OUTPUT_CHARS = 64 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS moves (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL, previous TEXT,
    reason TEXT NOT NULL, patch_id TEXT NOT NULL DEFAULT '', at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL, green INTEGER NOT NULL,
    output TEXT NOT NULL, source TEXT NOT NULL, duration_ms REAL NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS color (
    id INTEGER PRIMARY KEY CHECK (id = 1), hash TEXT NOT NULL, state TEXT NOT NULL,
    since REAL NOT NULL, known TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Color:
    """Whether HEAD `hash` is green, red or unknown (no verdict yet), since `since`."""

    hash: str
    state: str
    since: float | None


def _locked(
    method: Callable[Concatenate[GoldenHistory, P], T],
) -> Callable[Concatenate[GoldenHistory, P], T]:
    """Hold the history's lock for the whole call."""

    def locked(self: GoldenHistory, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class GoldenHistory:
    def __init__(self, path: Path) -> None:
        paths.private_sqlite(path)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        self.lock = threading.RLock()

    @_locked
    def close(self) -> None:
        self.db.close()

    @_locked
    def record_move(
        self, hash_: str, previous: str | None, reason: str, *, patch_id: str, now: float
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO moves (hash, previous, reason, patch_id, at) VALUES (?,?,?,?,?)",
                (hash_, previous, reason, patch_id, now),
            )
        self._set_color(hash_, "unknown", now)

    @_locked
    def record_run(
        self, hash_: str, green: bool, output: str, *, source: str, duration_ms: float, now: float
    ) -> Color:
        """Record a verdict on `hash_`; HEAD's color follows when `hash_` is HEAD's."""
        with self.db:
            self.db.execute(
                "INSERT INTO runs (hash, green, output, source, duration_ms, at)"
                " VALUES (?,?,?,?,?,?)",
                (hash_, int(green), output[-MAX_OUTPUT_CHARS:], source, duration_ms, now),
            )
        if self.color().hash in ("", hash_):
            self._set_color(hash_, "green" if green else "red", now)
        return self.color()

    @_locked
    def _set_color(self, hash_: str, state: str, now: float) -> None:
        """HEAD is `hash_` and its verdict `state`. `since` is when it last turned green or
        red (a move to a tree without a verdict yet is "unknown" and keeps `since`; a move
        on a red golden stays red: nothing says the new tree is green)."""
        current = self.color()
        if state == "unknown" and current.state == "red":
            state = "red"
        known = current.state if current.state != "unknown" else self._known()
        since = now if current.since is None or state not in ("unknown", known) else current.since
        with self.db:
            self.db.execute(
                "INSERT INTO color (id, hash, state, since, known) VALUES (1,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, state = excluded.state,"
                " since = excluded.since, known = excluded.known",
                (hash_, state, since, state if state != "unknown" else known),
            )

    @_locked
    def _known(self) -> str:
        row = self.db.execute("SELECT known FROM color WHERE id = 1").fetchone()
        return str(row[0]) if row is not None else "unknown"

    @_locked
    def color(self) -> Color:
        row = self.db.execute("SELECT hash, state, since FROM color WHERE id = 1").fetchone()
        if row is None:
            return Color("", "unknown", None)
        return Color(str(row[0]), str(row[1]), float(row[2]))

    @_locked
    def last_failure(self) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT hash, at, output, source FROM runs WHERE green = 0 ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"hash": row[0], "at": row[1], "output": row[2], "source": row[3]}

    @_locked
    def moves(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT hash, previous, reason, patch_id, at FROM moves ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(zip(("hash", "previous", "reason", "patch_id", "at"), r, strict=True))
                for r in rows]  # fmt: skip

    @_locked
    def move_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM moves").fetchone()[0])
