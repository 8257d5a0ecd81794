"""What a verdict announces, and what has been announced, in SQLite.

    announce(last, verdict) -> TestFailure | TestPassing | None      pure
        red after green, or red with another signature than the last red: TestFailure;
        red with nothing announced yet (the first run ever): TestFailure;
        green after red: TestPassing; anything else: nothing.

    VerdictStore(<state_dir>/heartbeat.sqlite3)
        runs        every verdict (hash, green, file, error, signature, timing, output tail)
        announced   one row: the last state announced (red/green, hash, signature, at)
The announced row is written once the signal went out, so a restarted heartbeat that
finds the same red (or green) announces nothing again, and one killed between the run
and the publish announces it at its next run. One connection, the worker thread's.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipc import paths
from ipc.signals import GitHash, Signal, TestFailure, TestPassing
from procs.heartbeat.suite import Verdict

DB_NAME = "heartbeat.sqlite3"
BUSY_TIMEOUT_S = 10.0
KEEP_RUNS = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL, green INTEGER NOT NULL,
    file TEXT NOT NULL, error TEXT NOT NULL, signature TEXT NOT NULL,
    timed_out INTEGER NOT NULL, exit_code INTEGER NOT NULL, duration_ms REAL NOT NULL,
    output TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS announced (
    id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL, hash TEXT NOT NULL,
    signature TEXT NOT NULL, signal TEXT NOT NULL, at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Announced:
    state: str  # "red" or "green"
    hash: str
    signature: str
    at: float


def announce(last: Announced | None, verdict: Verdict) -> Signal | None:
    """See the module docstring."""
    if verdict.green:
        if last is not None and last.state == "red":
            return TestPassing(GitHash(verdict.hash))
        return None
    if last is None or last.state == "green" or last.signature != verdict.signature:
        return TestFailure(verdict.file, verdict.error, GitHash(verdict.hash))
    return None


def state_after(verdict: Verdict, now: float) -> Announced:
    return Announced("green" if verdict.green else "red", verdict.hash, verdict.signature, now)


class VerdictStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        paths.private_sqlite(path)
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(self, v: Verdict) -> None:
        self._db.execute(
            "INSERT INTO runs (hash, green, file, error, signature, timed_out, exit_code, "
            "duration_ms, output, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (v.hash, int(v.green), v.file, v.error, v.signature, int(v.timed_out),
             v.exit_code, v.duration_ms, v.output, time.time()),
        )  # fmt: skip
        self._db.execute(
            "DELETE FROM runs WHERE id <= (SELECT max(id) FROM runs) - ?", (KEEP_RUNS,)
        )

    def last_run(self) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT hash, green, file, error, timed_out, duration_ms, at FROM runs "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        keys = ("hash", "green", "file", "error", "timed_out", "duration_ms", "at")
        out = dict(zip(keys, row, strict=True))
        out["green"], out["timed_out"] = bool(out["green"]), bool(out["timed_out"])
        return out

    def announced(self) -> Announced | None:
        row = self._db.execute(
            "SELECT state, hash, signature, at FROM announced WHERE id = 1"
        ).fetchone()
        return None if row is None else Announced(str(row[0]), str(row[1]), str(row[2]),
                                                  float(row[3]))  # fmt: skip

    def set_announced(self, state: Announced, signal: str) -> None:
        self._db.execute(
            "INSERT INTO announced (id, state, hash, signature, signal, at) "
            "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "hash = excluded.hash, signature = excluded.signature, signal = excluded.signal, "
            "at = excluded.at",
            (state.state, state.hash, state.signature, signal, state.at),
        )

    def statistics(self) -> dict[str, int]:
        (runs, reds) = self._db.execute(
            "SELECT count(*), coalesce(sum(1 - green), 0) FROM runs"
        ).fetchone()
        return {"runs": int(runs), "red_runs": int(reds)}
