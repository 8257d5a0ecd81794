"""Workspace records in SQLite (WAL): the system of record that survives a manager crash.

A record is written in state `creating` before anything touches the disk and turned
`ready` after, so a manager that dies half-way leaves a record its successor cleans up.
Owners are identified by pid plus the kernel's start time, so a recycled pid is no owner.
A workspace made for a loop names the loop (`owner_loop`): when its owner dies while the
loop still holds its bead's claim, it is `detached`, kept until the resumed loop adopts
it. A file from before these two existed is migrated when opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ipc import paths
from procs.workspaces._model import Workspace

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL,
    path        TEXT NOT NULL UNIQUE,
    scratch     TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    source      TEXT NOT NULL,
    owner_pid   INTEGER NOT NULL,
    owner_start INTEGER,
    created_at  REAL NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'orphaned', 'destroying',
                                           'detached')),
    owner_loop  TEXT
)
"""
_OLD_COLUMNS = (
    "id, slug, path, scratch, strategy, source, owner_pid, owner_start, created_at, state"
)
_COLUMNS = f"{_OLD_COLUMNS}, owner_loop"


@dataclass(frozen=True)
class WorkspaceRecord:
    id: str
    slug: str
    path: Path
    scratch: Path
    strategy: str
    source: Path
    owner_pid: int
    owner_start: int | None
    created_at: float
    state: str
    owner_loop: str | None = None

    def workspace(self) -> Workspace:
        return Workspace(
            id=self.id,
            slug=self.slug,
            path=self.path,
            strategy=self.strategy,
            owner_pid=self.owner_pid,
            created_at=self.created_at,
            source=self.source,
            state=self.state,
            owner_loop=self.owner_loop,
        )


def _record(row: tuple) -> WorkspaceRecord:
    id_, slug, path, scratch, strategy, source, pid, start, created, state, loop = row
    return WorkspaceRecord(
        id_,
        slug,
        Path(path),
        Path(scratch),
        strategy,
        Path(source),
        pid,
        start,
        created,
        state,
        loop,
    )


class WorkspaceRecords:
    """The workspaces table; each method is one short transaction (busy timeout 10 s)."""

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        paths.private_sqlite(db_path)  # 0600 whatever the umask
        self.db_path = db_path
        self._db = sqlite3.connect(db_path, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a file made before `detached` and `owner_loop` up to the schema (SQLite
        cannot change a CHECK in place: the table is copied, in one transaction)."""
        row = self._db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'workspaces'"
        ).fetchone()
        if row is None or "owner_loop" in row[0]:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("ALTER TABLE workspaces RENAME TO workspaces_old")
            self._db.execute(_SCHEMA)
            self._db.execute(f"INSERT INTO workspaces ({_OLD_COLUMNS}) "
                             f"SELECT {_OLD_COLUMNS} FROM workspaces_old")  # fmt: skip
            self._db.execute("DROP TABLE workspaces_old")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def insert(self, rec: WorkspaceRecord) -> None:
        self._db.execute(
            f"INSERT INTO workspaces ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.id,
                rec.slug,
                str(rec.path),
                str(rec.scratch),
                rec.strategy,
                str(rec.source),
                rec.owner_pid,
                rec.owner_start,
                rec.created_at,
                rec.state,
                rec.owner_loop,
            ),
        )

    def set_state(self, id_: str, state: str) -> None:
        self._db.execute("UPDATE workspaces SET state = ? WHERE id = ?", (state, id_))

    def set_owner(self, id_: str, pid: int, start_ticks: int | None) -> None:
        """Hand the workspace to a new owner (an adoption): it is `ready` again."""
        self._db.execute(
            "UPDATE workspaces SET owner_pid = ?, owner_start = ?, state = 'ready' WHERE id = ?",
            (pid, start_ticks, id_),
        )

    def delete(self, id_: str) -> None:
        self._db.execute("DELETE FROM workspaces WHERE id = ?", (id_,))

    def get(self, id_: str) -> WorkspaceRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM workspaces WHERE id = ?", (id_,)).fetchone()
        return _record(row) if row else None

    def all(self) -> Iterator[WorkspaceRecord]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM workspaces ORDER BY created_at, id"
        ).fetchall()
        return (_record(row) for row in rows)

    def close(self) -> None:
        self._db.close()


def process_start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` in clock ticks, or None if it does not run."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] in (b"Z", b"X"):  # dead, waiting to be reaped
        return None
    return int(fields[19])


def owner_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether the process that owned a workspace still runs (same pid, same start time)."""
    now = process_start_ticks(pid)
    return now is not None and (start_ticks is None or now == start_ticks)
