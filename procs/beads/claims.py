"""Bead claims in SQLite: the system of record for who works on which bead.

One row per (bead, generation). A claim is written in two steps around the store's
compare-and-swap, so a crash at any point leaves something a restart can settle:

    begin()    -> a `claiming` row with the next generation (refused if the bead has a
                  live claim: the partial unique index allows one `claiming`/`claimed`
                  row per bead, whatever process writes)
    confirm()  -> `claimed`, once the store's claim was read back
    abort()    -> `aborted`, when the store refused or failed (nothing else changes)
    finish()   -> `closed`, `failed` or `released`

`pending()` lists `claiming` rows a crash left: the service settles each against the
store at start (the store says our actor holds it: confirm; else abort). Generations
only grow, so a message about an older generation is recognisably stale.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from ipc import paths

LIVE = ("claiming", "claimed")
ENDED = ("aborted", "closed", "failed", "released")
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    bead_id     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    loop_id     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('claiming','claimed','aborted','closed',
                                               'failed','released')),
    reason      TEXT NOT NULL DEFAULT '',
    stats       TEXT NOT NULL DEFAULT '{}',
    started_at  REAL NOT NULL,
    ended_at    REAL,
    PRIMARY KEY (bead_id, generation)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_claim
    ON claims (bead_id) WHERE state IN ('claiming', 'claimed');
"""


class ClaimError(Exception):
    """A claim record cannot be written or read; the message says why."""


class AlreadyClaimed(ClaimError):
    """The bead has a live claim by another loop (`holder`)."""

    def __init__(self, message: str, holder: Claim) -> None:
        super().__init__(message)
        self.holder = holder


class StaleClaim(ClaimError):
    """The (bead, generation, loop) named is not the live claim: an older message."""


@dataclass(frozen=True)
class Claim:
    bead_id: str
    generation: int
    actor: str
    loop_id: str
    state: str
    reason: str
    started_at: float
    ended_at: float | None
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(row: sqlite3.Row) -> Claim:
    return Claim(
        bead_id=row["bead_id"],
        generation=row["generation"],
        actor=row["actor"],
        loop_id=row["loop_id"],
        state=row["state"],
        reason=row["reason"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        stats=orjson.loads(row["stats"]),
    )


class ClaimLedger:
    """The claims table of `<state_dir>/beads.sqlite3`. Safe to share between processes
    (each write is one IMMEDIATE transaction); one thread at a time per instance."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            paths.private_sqlite(self.path)
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,  # one thread at a time: the service's worker
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            with self._write():
                self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except (sqlite3.Error, OSError) as exc:
            raise ClaimError(f"{self.path}: cannot open the claims database: {exc}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise ClaimError(f"{self.path}: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writes ---------------------------------------------------------------------------

    def begin(self, bead_id: str, loop_id: str, actor: str) -> Claim:
        """A `claiming` row with the next generation. Raises AlreadyClaimed (with the
        holder) when the bead has a live claim of another loop; the same loop's live
        claim is returned as it is (a retried request)."""
        with self._transaction() as db:
            live = self._live(db, bead_id)
            if live is not None:
                if live.loop_id == loop_id and live.actor == actor:
                    return live
                raise AlreadyClaimed(
                    f"{bead_id} is claimed by {live.actor} (generation {live.generation}, "
                    f"{live.state})",
                    live,
                )
            (last,) = db.execute(
                "SELECT COALESCE(MAX(generation), 0) FROM claims WHERE bead_id = ?", (bead_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO claims (bead_id, generation, actor, loop_id, state, started_at)"
                " VALUES (?, ?, ?, ?, 'claiming', ?)",
                (bead_id, last + 1, actor, loop_id, time.time()),
            )
            claim = self._live(db, bead_id)
            assert claim is not None
            return claim

    def _set(
        self,
        bead_id: str,
        generation: int,
        frm: tuple[str, ...],
        to: str,
        *,
        reason: str = "",
        stats: Mapping[str, Any] | None = None,
    ) -> Claim:
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM claims WHERE bead_id = ? AND generation = ?", (bead_id, generation)
            ).fetchone()
            if row is None or row["state"] not in frm:
                now = "no such claim" if row is None else f"it is {row['state']}"
                raise StaleClaim(f"{bead_id} generation {generation}: {now}, not {'/'.join(frm)}")
            ended = None if to in LIVE else time.time()
            db.execute(
                "UPDATE claims SET state = ?, reason = ?, stats = ?, ended_at = ?"
                " WHERE bead_id = ? AND generation = ?",
                (to, reason, orjson.dumps(dict(stats or {})).decode(), ended, bead_id, generation),
            )
            new = db.execute(
                "SELECT * FROM claims WHERE bead_id = ? AND generation = ?", (bead_id, generation)
            ).fetchone()
            return _row(new)

    def confirm(self, bead_id: str, generation: int) -> Claim:
        return self._set(bead_id, generation, ("claiming", "claimed"), "claimed")

    def abort(self, bead_id: str, generation: int, reason: str) -> Claim:
        return self._set(bead_id, generation, ("claiming",), "aborted", reason=reason)

    def finish(
        self,
        bead_id: str,
        generation: int,
        state: str,
        reason: str = "",
        stats: Mapping[str, Any] | None = None,
    ) -> Claim:
        if state not in ("closed", "failed", "released"):
            raise ValueError(f"finish: state must be closed, failed or released, not {state!r}")
        return self._set(bead_id, generation, LIVE, state, reason=reason, stats=stats)

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def _live(db: sqlite3.Connection, bead_id: str) -> Claim | None:
        row = db.execute(
            "SELECT * FROM claims WHERE bead_id = ? AND state IN ('claiming', 'claimed')",
            (bead_id,),
        ).fetchone()
        return None if row is None else _row(row)

    def live(self, bead_id: str) -> Claim | None:
        with self._write():
            return self._live(self._db, bead_id)

    def all_live(self) -> list[Claim]:
        with self._write():
            rows = self._db.execute(
                "SELECT * FROM claims WHERE state IN ('claiming', 'claimed')"
                " ORDER BY started_at, bead_id"
            ).fetchall()
        return [_row(r) for r in rows]

    def pending(self) -> list[Claim]:
        return [c for c in self.all_live() if c.state == "claiming"]

    def failures(self, bead_id: str) -> int:
        """How many attempts at the bead failed (its generations in state `failed`)."""
        with self._write():
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM claims WHERE bead_id = ? AND state = 'failed'", (bead_id,)
            ).fetchone()
        return int(n)

    def history(self, bead_id: str) -> list[Claim]:
        with self._write():
            rows = self._db.execute(
                "SELECT * FROM claims WHERE bead_id = ? ORDER BY generation", (bead_id,)
            ).fetchall()
        return [_row(r) for r in rows]

    def statistics(self) -> dict[str, int]:
        with self._write():
            rows = self._db.execute("SELECT state, COUNT(*) FROM claims GROUP BY state").fetchall()
        return {state: n for state, n in rows}
