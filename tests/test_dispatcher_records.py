"""procs/dispatcher/records.py: a dispatcher.sqlite3 written before resumes were timed
opens, keeps its rows and takes resume times."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from procs.dispatcher.records import DispatchRecords

OLD_SCHEMA = """
CREATE TABLE dispatches (
    loop_id TEXT PRIMARY KEY, bead_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    generation INTEGER, state TEXT NOT NULL CHECK (state IN ('claiming','running','ended')),
    outcome TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
    resumes INTEGER NOT NULL DEFAULT 0, child_id TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
INSERT INTO dispatches (loop_id, bead_id, attempt, generation, state, resumes, child_id,
    created_at, updated_at) VALUES ('bd-1.1', 'bd-1', 1, 3, 'running', 1, 'loops.2', 1, 2);
"""


def test_an_older_file_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    records = DispatchRecords(path)
    try:
        (live,) = records.live()
        assert (live.loop_id, live.resumes, live.child_id, live.resumed_at) == (
            "bd-1.1", 1, "loops.2", None)  # fmt: skip
        records.update("bd-1.1", resumes=2, resumed_at=1234.5)
        again = records.get("bd-1.1")
        assert again is not None and (again.resumes, again.resumed_at) == (2, 1234.5)
    finally:
        records.close()
    reopened = DispatchRecords(path)  # a second open finds the column: no second ALTER
    try:
        got = reopened.get("bd-1.1")
        assert got is not None and got.resumed_at == 1234.5
    finally:
        reopened.close()
