"""The signal journal: every signal seen on the bus, in SQLite (WAL) in the state dir.

Written by one process (procs/signal_journal), read by anyone (`factoryctl signals`).
The schema lives here so writer and readers agree:

    signals(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, type TEXT, ts REAL, source TEXT,
            received_ts REAL, body TEXT)       -- body: the orjson envelope as sent

`seq` orders rows as the writer received them; a reader follows with `after_seq`. A
signal resent with the same id (bus.deliver) is stored once. Readers open the file
with `query_only`, never create it, and never block the writer (WAL).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ipc import paths, signals
from ipc.signals import Envelope

DB_NAME = "signals.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    source TEXT NOT NULL,
    received_ts REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signals_type_seq ON signals (type, seq);
CREATE TABLE IF NOT EXISTS writer_stats (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class JournalError(Exception):
    """The journal is missing or not a journal."""


def journal_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / DB_NAME


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    id: str
    type: str
    ts: float
    source: str
    received_ts: float
    body: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        """The signal's own fields (the body without the envelope keys)."""
        return {k: v for k, v in self.body.items() if k not in signals.ENVELOPE_KEYS}

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "received_ts": self.received_ts, **self.body}


class JournalWriter:
    """Appends envelopes in batches (one transaction per `append_many`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.too_large = 0  # signals refused for their size (never stored)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        paths.private_sqlite(self.path)  # 0600 whatever the umask: signals are private
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise JournalError(f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def append_many(self, envelopes: Iterable[Envelope]) -> int:
        """Store envelopes not stored yet; returns how many rows were added."""
        now = time.time()
        rows = []
        for e in envelopes:
            body = signals.encode(e)[1]
            if len(body) > signals.MAX_SIGNAL_BYTES:  # (a publisher of ours never sends one)
                self.too_large += 1
                continue
            rows.append((e.id, e.type, e.ts, e.source, now, body.decode()))
        if not rows:
            return 0
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO signals (id, type, ts, source, received_ts, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            return self._db.total_changes - before

    def prune(self, keep_rows: int) -> int:
        """Delete all but the newest `keep_rows` rows; returns how many went."""
        if keep_rows < 0:
            raise ValueError(f"keep_rows must be >= 0, got {keep_rows}")
        with self._transaction():
            top = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM signals").fetchone()[0]
            before = self._db.total_changes
            self._db.execute("DELETE FROM signals WHERE seq <= ?", (top - keep_rows,))
            return self._db.total_changes - before

    def save_stats(self, stats: dict[str, int]) -> None:
        """Persist the writer's counters (malformed/unknown drops) for readers."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO writer_stats (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                sorted(stats.items()),
            )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class JournalReader:
    """Read-only access; raises JournalError when there is no journal at `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise JournalError(f"no signal journal at {self.path} (is signal_journal running?)")
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._db.execute("PRAGMA query_only=1")
        try:
            self._db.execute("SELECT 1 FROM signals LIMIT 0")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise JournalError(f"{self.path} is not a signal journal: {exc}") from None

    def read(
        self,
        *,
        after_seq: int = 0,
        types: Iterable[str] | None = None,
        limit: int | None = None,
        last: int | None = None,
    ) -> list[JournalEntry]:
        """Entries with seq > after_seq, oldest first; `last` keeps only the newest N."""
        where: list[str] = ["seq > ?"]
        params: list[int | str] = [after_seq]
        wanted = sorted(set(types)) if types else []
        if wanted:
            where.append(f"type IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        columns = "seq, id, type, ts, source, received_ts, body"
        sql = f"SELECT {columns} FROM signals WHERE {' AND '.join(where)}"
        if last is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT {int(last)}) ORDER BY seq"
        else:
            sql += " ORDER BY seq"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
        return [
            JournalEntry(seq, id_, type_, ts, source, received, orjson.loads(body))
            for seq, id_, type_, ts, source, received, body in self._db.execute(sql, params)
        ]

    def follow(
        self,
        *,
        after_seq: int = 0,
        types: Iterable[str] | None = None,
        deadline: float,
        poll_s: float = 0.2,
    ) -> Iterator[JournalEntry]:
        """Yield entries as the writer adds them, until `deadline` (monotonic; math.inf ok).

        Checks the database for changes every `poll_s` seconds (PRAGMA data_version is
        a cheap no-read probe); an operator's tail, not a control path.
        """
        seq = after_seq
        version = None
        while True:
            current = self._db.execute("PRAGMA data_version").fetchone()[0]
            if current != version:
                version = current
                for entry in self.read(after_seq=seq, types=types):
                    seq = entry.seq
                    yield entry
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(poll_s, left))

    def last_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM signals").fetchone()[0])

    def count(self, type_name: str | None = None) -> int:
        if type_name is None:
            return int(self._db.execute("SELECT COUNT(*) FROM signals").fetchone()[0])
        sql = "SELECT COUNT(*) FROM signals WHERE type = ?"
        return int(self._db.execute(sql, (type_name,)).fetchone()[0])

    def writer_stats(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, value FROM writer_stats").fetchall())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
