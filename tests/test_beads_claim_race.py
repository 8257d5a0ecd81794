"""No double claim: 8 claimer processes race on 50 beads of one JSONL store and one
claims database, and are SIGKILLed at random (mid-write, holding the flock, inside a
SQLite transaction, between the store's claim and its record). Never two claims on one
bead; the file stays whole; a restart settles what the kills left half-done."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from procs.beads.claims import ClaimLedger
from procs.beads.jsonl import read_snapshot
from procs.beads.keeper import BeadKeeper
from procs.beads.store import JsonlBackend

ROOT = Path(__file__).resolve().parents[1]
BEADS = 50
CLAIMERS = 8
MIN_KILLING_S = 4.0
MAX_KILLING_S = 12.0

CLAIMER = """
import random, sys, os
from procs.beads.claims import AlreadyClaimed, ClaimError, ClaimLedger
from procs.beads.edits import Refused
from procs.beads.jsonl import StoreError
from procs.beads.keeper import BeadKeeper
from procs.beads.store import JsonlBackend

jsonl, db, loop_id, log = sys.argv[1:5]
keeper = BeadKeeper(JsonlBackend(jsonl), ClaimLedger(db))
out = open(log, "a")
while True:
    beads = [b.id for b in keeper.read().dispatchable]
    if not beads:
        break
    random.shuffle(beads)
    for bead_id in beads:
        try:
            keeper.claim(bead_id, loop_id)
        except (AlreadyClaimed, Refused, StoreError, ClaimError):
            continue
        out.write(f"{bead_id} {loop_id}\\n")
        out.flush()
        os.fsync(out.fileno())
"""


def start(tmp_path: Path, loop_id: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", textwrap.dedent(CLAIMER), str(tmp_path / "issues.jsonl"),
            str(tmp_path / "beads.sqlite3"), loop_id, str(tmp_path / "claims.log")]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL)


@pytest.mark.integration
def test_no_double_claim_under_random_sigkill(tmp_path: Path) -> None:
    jsonl = tmp_path / "issues.jsonl"
    lines = [
        orjson.dumps(
            {
                "id": f"race-{i:02d}",
                "title": f"bead {i}",
                "status": "open",
                "priority": i % 4,
                "issue_type": "task",
                "created_at": f"2026-01-01T00:00:{i:02d}Z",
            }
        )
        for i in range(BEADS)
    ]
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "claims.log").touch()
    ClaimLedger(tmp_path / "beads.sqlite3").close()  # the schema, before the race
    rnd = random.Random(int(os.environ.get("BEADS_RACE_SEED", "14")))
    serial = iter(range(10**6))
    procs = [start(tmp_path, f"L{next(serial)}") for _ in range(CLAIMERS)]
    kills = 0
    try:
        start_at = time.monotonic()
        log = tmp_path / "claims.log"

        def racing() -> bool:  # at least MIN_KILLING_S, then until half the beads are taken
            elapsed = time.monotonic() - start_at
            if elapsed < MIN_KILLING_S:
                return True
            return elapsed < MAX_KILLING_S and len(log.read_bytes().splitlines()) < BEADS // 2

        while racing() and any(p.poll() is None for p in procs):
            victim = rnd.randrange(len(procs))
            try:  # a bounded wait for an exit, at a random length: when the kill lands
                procs[victim].wait(timeout=rnd.uniform(0.005, 0.08))
            except subprocess.TimeoutExpired:
                os.killpg(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait(timeout=10)
                kills += 1
            if procs[victim].returncode == -signal.SIGKILL or rnd.random() < 0.5:
                procs[victim] = start(tmp_path, f"L{next(serial)}")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    assert kills >= 10, f"only {kills} kills: the race was not exercised"

    # whatever was killed, the file is whole: 50 beads, not a line lost or torn
    snap = read_snapshot(jsonl)
    assert snap.malformed_lines == 0 and len(snap.beads) == BEADS
    assert len(jsonl.read_bytes().splitlines()) == BEADS

    # never two claims on one bead: in the claimers' logs, in the database, in the file
    logged: dict[str, set[str]] = defaultdict(set)
    for line in (tmp_path / "claims.log").read_text().splitlines():
        bead_id, loop_id = line.split()
        logged[bead_id].add(loop_id)
    assert all(len(loops) == 1 for loops in logged.values()), logged
    claimed = sum(b.status == "in_progress" for b in snap.beads.values())
    assert claimed >= len(logged) >= 10, "too few claims: the race was not exercised"
    for bead_id, (loop_id,) in logged.items():
        assert snap.records[bead_id]["assignee"] == f"factory/{loop_id}"

    # a restart settles the half-made claims; a last round claims the rest, unkilled
    ledger = ClaimLedger(tmp_path / "beads.sqlite3")
    keeper = BeadKeeper(JsonlBackend(jsonl), ledger)
    settled = keeper.settle()
    print(
        f"kills {kills}, claimed in the race {claimed} (logged {len(logged)}), "
        f"settled {[s['action'] for s in settled]}"
    )
    last = start(tmp_path, "final")
    assert last.wait(timeout=60) == 0
    snap = read_snapshot(jsonl)
    assert {b.status for b in snap.beads.values()} == {"in_progress"}
    db = ledger._db
    live = db.execute(
        "SELECT bead_id, actor FROM claims WHERE state IN ('claiming','claimed')"
    ).fetchall()
    assert len(live) == BEADS
    for bead_id, actor in live:
        assert snap.records[bead_id]["assignee"] == actor
    (claimed_twice,) = db.execute(
        "SELECT COUNT(*) FROM (SELECT bead_id FROM claims WHERE state = 'claimed'"
        " GROUP BY bead_id HAVING COUNT(*) > 1)"
    ).fetchone()
    assert claimed_twice == 0
    ledger.close()
