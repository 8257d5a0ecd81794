"""Claims, closes and failures through BeadKeeper, on the JSONL store and on `bd` (a
test double on PATH): compare-and-swap, read back, recorded in SQLite with generations,
surviving restarts; a bd that fails, hangs or prints garbage changes nothing."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ipc.types import process_start_ticks
from procs.beads.bd import BdBackend, BdError, find_bd
from procs.beads.claims import AlreadyClaimed, ClaimLedger, StaleClaim
from procs.beads.edits import Refused
from procs.beads.jsonl import JsonlFile, read_snapshot
from procs.beads.keeper import BadLoopId, BeadKeeper
from procs.beads.store import JsonlBackend, ReadBackFailed
from tests.waiting import wait_until

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def issue(id_: str, **fields: Any) -> dict[str, Any]:
    return {"id": id_, "title": f"bead {id_}", "status": "open", "priority": 2,
            "issue_type": "task", "created_at": "2026-01-01T00:00:00Z", **fields}  # fmt: skip


def jsonl_keeper(tmp_path: Path, *beads: dict[str, Any], max_attempts: int = 3) -> BeadKeeper:
    path = tmp_path / "issues.jsonl"
    if not path.exists():
        path.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in beads))
    store = JsonlBackend(path, clock=lambda: NOW, file=JsonlFile(path))
    return BeadKeeper(store, ClaimLedger(tmp_path / "beads.sqlite3"), max_attempts=max_attempts)


def record(tmp_path: Path, bead_id: str) -> dict[str, Any]:
    return read_snapshot(tmp_path / "issues.jsonl").records[bead_id]


# -- JSONL --------------------------------------------------------------------------------


def test_a_claim_is_compare_and_swap_and_recorded(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"), issue("b", assignee="human"),
                          issue("c", status="closed"))  # fmt: skip
    claim = keeper.claim("a", "7")
    assert (claim.state, claim.generation, claim.actor) == ("claimed", 1, "factory/7")
    assert (record(tmp_path, "a")["status"], record(tmp_path, "a")["assignee"]) == (
        "in_progress", "factory/7",
    )  # fmt: skip
    assert keeper.claim("a", "7") == claim  # asked again: the same claim
    with pytest.raises(AlreadyClaimed, match="claimed by factory/7"):
        keeper.claim("a", "8")
    with pytest.raises(Refused, match="assigned to human"):
        keeper.claim("b", "8")
    with pytest.raises(Refused, match="is closed"):
        keeper.claim("c", "8")
    # refusals leave an aborted generation, no live claim, and the store as it was
    assert [c.state for c in keeper.ledger.history("b")] == ["aborted"]
    assert keeper.ledger.live("b") is None
    assert record(tmp_path, "b")["assignee"] == "human"


def test_claims_survive_a_restart(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"))
    keeper.claim("a", "7")
    keeper.ledger.close()
    again = jsonl_keeper(tmp_path)
    live = again.ledger.live("a")
    assert live is not None and (live.loop_id, live.generation) == ("7", 1)
    with pytest.raises(AlreadyClaimed):
        again.claim("a", "8")


def test_close_puts_the_completion_stats_in_the_bead(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a", metadata={"team": "x"}))
    claim = keeper.claim("a", "7")
    stats = {"commits": 4, "reverts": 1, "duration_ms": 91000}
    done = keeper.close("a", "7", generation=claim.generation, reason="landed", stats=stats)
    assert (done.state, done.stats) == ("closed", stats)
    bead = record(tmp_path, "a")
    assert bead["status"] == "closed" and bead["closed_at"] == "2026-03-01T12:00:00Z"
    assert bead["close_reason"] == "landed (commits 4, reverts 1, duration ms 91000)"
    assert bead["metadata"] == {"team": "x", "factory": {"closed_by": "factory/7", **stats}}
    assert keeper.ledger.live("a") is None


def test_failures_reopen_the_bead_then_block_it(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"), max_attempts=2)
    keeper.claim("a", "7")
    _, status = keeper.fail("a", "7", reason="red after 5 tries")
    bead = record(tmp_path, "a")
    assert status == "open" and bead["status"] == "open" and "assignee" not in bead
    assert bead["comments"][0]["text"] == "factory: attempt 1 of 2 failed: red after 5 tries"
    assert bead["comments"][0]["author"] == "factory/7"
    assert [b.id for b in keeper.read().dispatchable] == ["a"]
    claim = keeper.claim("a", "9")
    assert claim.generation == 2
    _, status = keeper.fail("a", "9", reason="gauntlet: weakened test", generation=2)
    bead = record(tmp_path, "a")
    assert status == "blocked" and bead["status"] == "blocked"
    assert bead["comments"][1]["text"].endswith("weakened test; blocked after the last attempt")
    view = keeper.read()
    assert view.ready == [] and view.stuck[0].reasons == (bead["comments"][1]["text"],)


def test_a_message_about_an_older_generation_is_stale(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"))
    keeper.claim("a", "7")
    keeper.release("a", "7", reason="loop never started")
    assert record(tmp_path, "a")["status"] == "open"
    keeper.claim("a", "8")
    with pytest.raises(StaleClaim, match="not claimed by loop 7"):
        keeper.fail("a", "7", reason="late news", generation=1)
    with pytest.raises(StaleClaim, match="generation 1 is not the live one"):
        keeper.close("a", "8", generation=1)
    assert record(tmp_path, "a")["assignee"] == "factory/8"
    assert keeper.ledger.failures("a") == 0  # a release is not an attempt


def test_a_bead_taken_away_by_hand_refuses_close(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"))
    keeper.claim("a", "7")
    path = tmp_path / "issues.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"factory/7"', b'"human"'))
    with pytest.raises(Refused, match="not held by factory/7"):
        keeper.close("a", "7")
    assert record(tmp_path, "a")["status"] == "in_progress"
    assert keeper.ledger.live("a") is not None  # still ours on record: an operator decides


def test_settle_confirms_or_aborts_what_a_crash_left(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"), issue("b"))
    # crashed after begin, before the store's claim (b); and after it, before confirm (a)
    keeper.ledger.begin("b", "8", "factory/8")
    pending = keeper.ledger.begin("a", "7", "factory/7")
    keeper.backend.claim("a", "factory/7")
    settled = sorted(keeper.settle(), key=lambda s: s["bead_id"])
    assert [s["action"] for s in settled] == ["confirmed", "aborted"]
    live = keeper.ledger.live("a")
    assert live is not None and (live.state, live.generation) == ("claimed", pending.generation)
    assert keeper.ledger.live("b") is None


def test_loop_ids_are_one_token(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"))
    for bad in ("", "a b", "x/../y", "-rf"):
        with pytest.raises(BadLoopId):
            keeper.claim("a", bad)
    assert keeper.ledger.history("a") == []


# -- bd, through a test double on PATH ------------------------------------------------------

FAKE_BD = """\
#!{python}
# A stand-in for beads' bd: issues in $FAKE_BD_STATE (a JSON list), each call logged to
# $FAKE_BD_LOG. The mode, in the file $FAKE_BD_MODE: ok, fail, hang, garbage, lie (a claim
# that exits 0 and changes nothing), stolen (a claim that another actor wins).
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_BD_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
mode = open(os.environ["FAKE_BD_MODE"]).read().strip() or "ok"
mutating = args[0] in ("update", "close", "comments")
if mode == "fail" and (mutating or args[0] == "ready"):
    sys.stderr.write("Error: database is locked\\n"); sys.exit(1)
if mode == "hang" and (mutating or args[0] == "ready"):
    time.sleep(60)
if mode == "garbage" and args[0] == "ready":
    print("Warning: auto-import failed\\n[{{not json"); sys.exit(0)
path = os.environ["FAKE_BD_STATE"]
issues = json.load(open(path))
by_id = {{i["id"]: i for i in issues}}
def flag(name, default=None):
    return args[args.index(name) + 1] if name in args else default
def save():
    json.dump(issues, open(path, "w"))
if args[0] == "ready":
    print(json.dumps([i for i in issues if i["status"] == "open"]))
elif args[0] == "blocked":
    print(json.dumps([{{**i, "blocked_by": ["x"]}} for i in issues if i["status"] == "blocked"]))
elif args[0] == "show":
    print(json.dumps([by_id[args[1]]]))
elif args[0] == "update" and "--claim" in args:
    issue, actor = by_id[args[1]], flag("--actor")
    if mode == "lie":
        sys.exit(0)
    if mode == "stolen":
        issue.update(status="in_progress", assignee="someone-else"); save()
        sys.stderr.write("Error claiming: already claimed\\n"); sys.exit(1)
    if issue["status"] != "open" or issue.get("assignee") not in (None, "", actor):
        sys.stderr.write("Error claiming: already claimed\\n"); sys.exit(1)
    issue.update(status="in_progress", assignee=actor); save()
    print(json.dumps([issue]))
elif args[0] == "update":
    issue = by_id[args[1]]
    issue["status"] = flag("--status", issue["status"])
    if "--assignee" in args:
        issue["assignee"] = flag("--assignee")
    save(); print(json.dumps([issue]))
elif args[0] == "close":
    by_id[args[1]].update(status="closed", close_reason=flag("--reason")); save()
    print(json.dumps([by_id[args[1]]]))
elif args[0] == "comments":
    by_id[args[2]].setdefault("comments", []).append({{"text": args[3]}}); save()
"""


class FakeBd:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        self.exe = bin_dir / "bd"
        self.exe.write_text(FAKE_BD.format(python=sys.executable))
        self.exe.chmod(self.exe.stat().st_mode | stat.S_IXUSR)
        self.state = tmp_path / "bd-state.json"
        self.log = tmp_path / "bd-log.jsonl"
        self.log.touch()
        self.mode_file = tmp_path / "bd-mode"
        self.mode_file.touch()
        monkeypatch.setenv("FAKE_BD_MODE", str(self.mode_file))
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_BD_STATE", str(self.state))
        monkeypatch.setenv("FAKE_BD_LOG", str(self.log))

    def issues(self, *beads: dict[str, Any]) -> None:
        self.state.write_bytes(orjson.dumps(list(beads)))

    def mode(self, mode: str) -> None:
        self.mode_file.write_text(mode)

    def calls(self) -> list[list[str]]:
        return [orjson.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def bd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBd:
    fake = FakeBd(tmp_path, monkeypatch)
    fake.issues(issue("a", priority=3), issue("b", priority=1),
                issue("c", priority=1, created_at="2025-12-01T00:00:00Z"))  # fmt: skip
    return fake


def bd_keeper(tmp_path: Path, timeout_s: float = 5.0) -> BeadKeeper:
    exe = find_bd()
    assert exe is not None
    return BeadKeeper(BdBackend(exe, timeout_s=timeout_s), ClaimLedger(tmp_path / "b.sqlite3"))


def test_bd_is_found_on_path_and_used(bd: FakeBd, tmp_path: Path) -> None:
    assert find_bd() == str(bd.exe)
    keeper = bd_keeper(tmp_path)
    assert [b.id for b in keeper.read().ready] == ["c", "b", "a"]  # re-sorted: dispatch order
    assert ["ready", "--json", "--limit", "0"] in bd.calls()
    claim = keeper.claim("c", "7")
    assert claim.state == "claimed"
    assert ["update", "c", "--claim", "--actor", "factory/7", "--json"] in bd.calls()
    assert bd.calls()[-1] == ["show", "c", "--json"]  # read back
    keeper.close("c", "7", reason="landed", stats={"commits": 2})
    assert ["close", "c", "--reason", "landed (commits 2)", "--actor", "factory/7", "--json"] in (
        bd.calls()
    )
    keeper.claim("b", "8")
    _, status = keeper.fail("b", "8", reason="timeout")
    state = {i["id"]: i for i in orjson.loads(bd.state.read_bytes())}
    assert status == "open" and state["b"]["status"] == "open" and state["b"]["assignee"] == ""
    assert state["b"]["comments"] == [{"text": "factory: attempt 1 of 3 failed: timeout"}]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("fail", "exit status 1: Error: database is locked"),
        ("hang", "no answer after 0.5s"),
        ("lie", "reads back open/unassigned, not in_progress/factory/7"),
        ("stolen", "was claimed by someone-else"),
    ],
)
def test_a_bad_bd_claim_changes_nothing(
    bd: FakeBd, tmp_path: Path, mode: str, message: str
) -> None:
    keeper = bd_keeper(tmp_path, timeout_s=0.5)
    before = bd.state.read_bytes()
    bd.mode(mode)
    error = (Refused,) if mode == "stolen" else (BdError, ReadBackFailed)
    with pytest.raises(error, match=message):
        keeper.claim("a", "7")
    assert keeper.ledger.live("a") is None
    assert [c.state for c in keeper.ledger.history("a")] == ["aborted"]
    if mode != "stolen":
        assert bd.state.read_bytes() == before


@pytest.mark.parametrize(
    ("mode", "message"),
    [("fail", "exit status 1"), ("hang", "no answer after 0.5s"), ("garbage", "printed garbage")],
)
def test_a_bad_bd_reading_is_an_error_never_no_work(
    bd: FakeBd, tmp_path: Path, mode: str, message: str
) -> None:
    keeper = bd_keeper(tmp_path, timeout_s=0.5)
    bd.mode(mode)
    with pytest.raises(BdError, match=message):
        keeper.read()


def test_a_bd_that_fails_a_close_leaves_the_claim_live(bd: FakeBd, tmp_path: Path) -> None:
    keeper = bd_keeper(tmp_path, timeout_s=0.5)
    keeper.claim("a", "7")
    bd.mode("fail")
    with pytest.raises(BdError, match="bd close a"):
        keeper.close("a", "7", reason="landed")
    live = keeper.ledger.live("a")
    assert live is not None and live.state == "claimed"  # retried later, never forgotten


def test_a_hung_bd_is_killed_with_its_children(bd: FakeBd, tmp_path: Path) -> None:
    bd.exe.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        sleep 60 &
        echo $! > {tmp_path}/child.pid
        wait
        """)
    )
    with pytest.raises(BdError, match="no answer"):
        BdBackend(str(bd.exe), timeout_s=0.5).read()
    child = int((tmp_path / "child.pid").read_text())
    wait_until(lambda: process_start_ticks(child) is None, timeout=5, what="bd's child killed")


def test_a_bead_blocked_since_the_reading_is_not_claimed(tmp_path: Path) -> None:
    keeper = jsonl_keeper(tmp_path, issue("a"), issue("b"))
    assert [b.id for b in keeper.read().dispatchable] == ["a", "b"]
    path = tmp_path / "issues.jsonl"  # meanwhile someone makes b wait for a
    dep = {"issue_id": "b", "depends_on_id": "a", "type": "blocks", "metadata": "{}"}
    lines = path.read_bytes().splitlines()
    lines[1] = orjson.dumps({**orjson.loads(lines[1]), "dependencies": [dep]})
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(Refused, match=r"b is not ready: blocks on a \(open\)"):
        keeper.claim("b", "7")
    assert record(tmp_path, "b")["status"] == "open"


def test_a_symlinked_export_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_bytes(orjson.dumps(issue("a")) + b"\n")
    (tmp_path / "issues.jsonl").symlink_to(real)
    keeper = jsonl_keeper(tmp_path)
    keeper.claim("a", "7")
    assert (tmp_path / "issues.jsonl").is_symlink()
    assert orjson.loads(real.read_bytes())["assignee"] == "factory/7"
