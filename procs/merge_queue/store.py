"""The queue in SQLite (WAL): every patch, waiting or decided, with its test output.

    store = PatchStore(path)                       # <state_dir>/merge_queue.sqlite3, 0600
    patch_id = store.add(source=..., ref=..., ...) # state "fetching" until fetched()
    store.fetched(patch_id, tip, base)             # now "queued"
    store.waiting() -> [Entry]                     # priority (0 first), then age
    store.decide(patch_id, state, reason=..., ...) # "accepted" | "rejected", once

A patch is decided once: decide() on a decided patch changes nothing and returns False.
At open, patches a crash left "fetching" are dropped (their proposer got no answer).
Used from the service loop's thread only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ipc import paths

MAX_OUTPUT_CHARS = 64 * 1024
TAIL_CHARS = 2000
_COLUMNS = ("patch_id", "state", "reason", "detail", "priority", "key", "bead_id", "title",
            "source", "ref", "tip", "base", "landed_hash", "output", "proposed_at",
            "decided_at", "grp")  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS patches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, patch_id TEXT UNIQUE, state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '',
    priority INTEGER NOT NULL, key TEXT NOT NULL DEFAULT '', bead_id TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '', source TEXT NOT NULL, ref TEXT NOT NULL,
    tip TEXT NOT NULL DEFAULT '', base TEXT NOT NULL DEFAULT '',
    landed_hash TEXT NOT NULL DEFAULT '', output TEXT NOT NULL DEFAULT '',
    proposed_at REAL NOT NULL, decided_at REAL, grp TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS patches_waiting ON patches (state, priority, seq);
"""


@dataclass(frozen=True)
class Entry:
    patch_id: str
    state: str  # fetching | queued | accepted | rejected
    reason: str  # conflict | tests | gauntlet | stale (rejected only)
    detail: str
    priority: int
    key: str
    bead_id: str
    title: str
    source: str
    ref: str
    tip: str
    base: str
    landed_hash: str
    output: str
    proposed_at: float
    decided_at: float | None
    group: str  # patches racing to fix one thing (a swarm): the first to land wins

    @property
    def decided(self) -> bool:
        return self.state in ("accepted", "rejected")

    def to_dict(self, *, full_output: bool = False) -> dict[str, Any]:
        data = asdict(self)
        output = data.pop("output")
        if full_output:
            data["output"] = output
        data["output_tail"] = output[-TAIL_CHARS:]
        return data


class PatchStore:
    def __init__(self, path: Path) -> None:
        paths.private_sqlite(path)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        with self.db:
            self.db.execute("DELETE FROM patches WHERE state = 'fetching'")

    def close(self) -> None:
        self.db.close()

    def add(self, *, source: str, ref: str, priority: int, key: str, bead_id: str, title: str,
            now: float, group: str = "") -> str:  # fmt: skip
        with self.db:
            cur = self.db.execute(
                "INSERT INTO patches (state, priority, key, bead_id, title, source, ref,"
                " proposed_at, grp) VALUES ('fetching',?,?,?,?,?,?,?,?)",
                (priority, key, bead_id, title, source, ref, now, group),
            )
            patch_id = f"p-{cur.lastrowid}"
            self.db.execute(
                "UPDATE patches SET patch_id = ? WHERE seq = ?", (patch_id, cur.lastrowid)
            )
        return patch_id

    def fetched(self, patch_id: str, tip: str, base: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE patches SET state = 'queued', tip = ?, base = ? WHERE patch_id = ?"
                " AND state = 'fetching'",
                (tip, base, patch_id),
            )

    def drop(self, patch_id: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM patches WHERE patch_id = ? AND state = 'fetching'",
                            (patch_id,))  # fmt: skip

    def decide(self, patch_id: str, state: str, *, now: float, reason: str = "",
               detail: str = "", output: str = "", landed_hash: str = "") -> bool:  # fmt: skip
        if state not in ("accepted", "rejected"):
            raise ValueError(f"a decision is accepted or rejected, got {state!r}")
        with self.db:
            cur = self.db.execute(
                "UPDATE patches SET state = ?, reason = ?, detail = ?, output = ?,"
                " landed_hash = ?, decided_at = ? WHERE patch_id = ? AND state = 'queued'",
                (state, reason, detail, output[-MAX_OUTPUT_CHARS:], landed_hash, now, patch_id),
            )
        return cur.rowcount == 1

    def _select(self, where: str, params: tuple[Any, ...] = ()) -> list[Entry]:
        rows = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM patches {where}", params)
        return [Entry(*row) for row in rows.fetchall()]

    def get(self, patch_id: str) -> Entry | None:
        found = self._select("WHERE patch_id = ?", (patch_id,))
        return found[0] if found else None

    def waiting(self) -> list[Entry]:
        return self._select("WHERE state = 'queued' ORDER BY priority, seq")

    def by_key(self, key: str) -> list[Entry]:
        """Patches proposed under `key`, newest first."""
        return self._select("WHERE key = ? AND state != 'fetching' ORDER BY seq DESC", (key,))

    def recent(self, limit: int = 10) -> list[Entry]:
        return self._select(
            "WHERE state IN ('accepted', 'rejected') ORDER BY decided_at DESC, seq DESC LIMIT ?",
            (limit,),
        )

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, count(*) FROM patches GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}
