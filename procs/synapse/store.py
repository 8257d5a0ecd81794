"""The synapse's memory in SQLite (<state_dir>/synapse/synapse.sqlite3), so a synapse
restarted mid-episode (SIGKILL, a crash, a reload) takes its generations up again
instead of forgetting them and spawning a second swarm for the same red.

    generations (id PK, context_hash, state, started_at, record)
                record: GenerationRecord.snapshot() as JSON, written on every change:
                made, culprit found, swarming, each mutator started (written before the
                next one is asked for), stopping, done
    facts       (key PK, value JSON): known_good, counts

What a crash can leave: the last change before it is either written or not (each write
is one transaction); a mutator started but not yet written is found again by its
`--generation` file in factoryd's tree (procs/synapse/service.py adopts it). One
connection, shared by the service's threads under a lock; WAL; busy waits bounded by
BUSY_TIMEOUT_S. Raises StoreError (with the path) where SQLite fails.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson

from ipc import paths
from procs.synapse.records import LIVE, GenerationRecord

DB_NAME = "synapse.sqlite3"
BUSY_TIMEOUT_S = 5.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY, context_hash TEXT NOT NULL, state TEXT NOT NULL,
    started_at REAL NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SET_FACT = ("INSERT INTO facts (key, value) VALUES (?, ?) "
             "ON CONFLICT (key) DO UPDATE SET value = excluded.value")  # fmt: skip


class StoreError(RuntimeError):
    """The synapse's database cannot be read or written; the message names it."""


class SynapseStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            paths.private_sqlite(path)
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)  # fmt: skip
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a killed process loses nothing
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(self, record: GenerationRecord, *, counts: dict[str, int] | None = None) -> None:
        """Write the record as it is now, and `counts` with it (one transaction)."""
        raw = record.snapshot()
        with self._lock:
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.execute(
                        "INSERT INTO generations (id, context_hash, state, started_at, record) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                        "state = excluded.state, record = excluded.record",
                        (raw["id"], raw["context_hash"], raw["state"], raw["started_at"],
                         orjson.dumps(raw).decode()),
                    )  # fmt: skip
                    if counts is not None:
                        self._db.execute(_SET_FACT, ("counts", orjson.dumps(counts).decode()))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from None

    def load(self, keep: int) -> tuple[list[GenerationRecord], list[str]]:
        """Every live generation and the newest `keep` others, oldest first; and the
        ids of rows that could not be read (reported by the caller, then forgotten)."""
        placeholders = ",".join("?" for _ in LIVE)
        rows = self._query(
            f"SELECT id, record FROM generations WHERE state IN ({placeholders}) UNION "
            "SELECT id, record FROM (SELECT id, record, started_at FROM generations "
            f"WHERE state NOT IN ({placeholders}) ORDER BY started_at DESC LIMIT ?)",
            (*LIVE, *LIVE, keep),
        )
        records, bad = [], []
        for gen_id, text in rows:
            try:
                records.append(GenerationRecord.restore(orjson.loads(text)))
            except (ValueError, KeyError, TypeError):
                bad.append(str(gen_id))
        return sorted(records, key=lambda r: r.started_at), bad

    def forget(self, ids: list[str]) -> None:
        for gen_id in ids:
            self._execute("DELETE FROM generations WHERE id = ?", (gen_id,))

    def set_fact(self, key: str, value: Any) -> None:
        self._execute(_SET_FACT, (key, orjson.dumps(value).decode()))

    def fact(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM facts WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return orjson.loads(rows[0][0])
        except orjson.JSONDecodeError:
            return default

    def _execute(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from None

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from None
