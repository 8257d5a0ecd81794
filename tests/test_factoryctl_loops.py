"""`factoryctl loops` as a real process over a loop store written by LoopStore: the
list and one loop's history, as text and JSON, by loop id or bead id; an unknown id or
a state dir with no loops database is a clear error with exit 5 (and creates nothing);
a writer holding the store's write lock does not block it (WAL)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from procs.dispatcher.records import DispatchRecords
from procs.loop import FactoryLoopState
from procs.loop.events import AuditorWroteTest, CodeWritten, RedConfirmed, TcrPassed
from procs.loop.store import LoopStore
from supervisor.ctl.exit_status import ExitStatus
from tests.harness import ROOT

pytestmark = pytest.mark.integration  # runs factoryctl processes


def factoryctl(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.ctl.cli", "--state-dir", str(state), "loops", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FactoryLoopState]:
    """Two loops: bd-1's attempt 1 in Verifying after four transitions, bd-2's just
    created; bd-1 also has an attempt 2 (the newest, which its bead id names)."""
    path = tmp_path_factory.mktemp("ctl") / "state"
    now = time.time()
    with LoopStore(path / "loops.sqlite3") as store:
        one = store.create(FactoryLoopState(loop_id="bd-1.1", bead_id="bd-1", attempt=1,
                                            workspace="/ws/one", golden_hash="a" * 40),
                           now - 3700)  # fmt: skip
        for event in (AuditorWroteTest(head="r1", reasoning="test mul\nmore"),
                      RedConfirmed("1 failed"), CodeWritten(head="w1", summary="mul"),
                      TcrPassed(head="g1", output="1 passed")):  # fmt: skip
            one = store.advance(one, event, now - 3600)
        two = FactoryLoopState(loop_id="bd-2.1", bead_id="bd-2", attempt=1, workspace="/ws/two",
                               golden_hash="b" * 40)  # fmt: skip
        store.create(two, now - 5)
        three = FactoryLoopState(loop_id="bd-1.2", bead_id="bd-1", attempt=2,
                                 workspace="/ws/three", golden_hash="c" * 40)  # fmt: skip
        store.create(three, now)
    return path, one


@pytest.fixture(scope="module")
def state(stored: tuple[Path, FactoryLoopState]) -> Path:
    return stored[0]


def test_the_list_shows_every_loop_with_its_counters(
    stored: tuple[Path, FactoryLoopState],
) -> None:
    state, one_state = stored  # its counters are what transition() made of the events
    counters = [one_state.iteration, one_state.greens, one_state.commits, one_state.reverts]
    done = factoryctl(state)
    assert done.returncode == ExitStatus.SUCCESS, done.stderr
    header, first, second, third = done.stdout.splitlines()
    assert header.split() == ["LOOP", "BEAD", "PHASE", "ITER", "GREENS", "COMMITS", "REVERTS",
                              "COST", "AGE", "WORKSPACE"]  # fmt: skip
    assert first.split() == ["bd-1.1", "bd-1", "verifying", *map(str, counters), "-", "1h",
                             "/ws/one"]  # fmt: skip
    assert second.split()[:3] == ["bd-2.1", "bd-2", "auditing"] and "/ws/two" in second
    assert third.split()[0] == "bd-1.2"
    loops = orjson.loads(factoryctl(state, "--json").stdout)["loops"]
    assert [loop["loop_id"] for loop in loops] == ["bd-1.1", "bd-2.1", "bd-1.2"]
    one = loops[0]
    assert {k: one[k] for k in ("bead", "attempt", "phase", "iteration", "greens", "commits",
                                "reverts", "cost", "workspace", "reason")} == {
        "bead": "bd-1", "attempt": 1, "phase": "verifying", "cost": None,
        "workspace": "/ws/one", "reason": "",
        **dict(zip(("iteration", "greens", "commits", "reverts"), counters, strict=True)),
    }  # fmt: skip
    assert one_state.iteration == 1
    assert 3690 < one["age_s"] < 3800


def test_one_loop_shows_its_history_by_loop_id_or_bead_id(state: Path) -> None:
    done = factoryctl(state, "bd-1.1")
    assert done.returncode == ExitStatus.SUCCESS, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("loop bd-1.1  bead bd-1 (attempt 1)  verifying")
    events = [line.split()[4] for line in lines[3:]]
    assert events == ["AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed"]
    assert lines[3].endswith("auditing -> verifying_red  test mul")
    loop = orjson.loads(factoryctl(state, "bd-1.1", "--json").stdout)
    first = loop["history"][0]
    assert (first["seq"], first["role"], first["from"], first["to"]) == (
        1, "auditor", "auditing", "verifying_red")  # fmt: skip
    assert loop["history"][0]["content"] == "test mul\nmore"
    newest = orjson.loads(factoryctl(state, "bd-1", "--json").stdout)
    assert (newest["loop_id"], newest["attempt"], newest["history"]) == ("bd-1.2", 2, [])


def test_an_unknown_id_or_no_store_is_a_clear_error(state: Path, tmp_path: Path) -> None:
    unknown = factoryctl(state, "bd-9")
    assert unknown.returncode == ExitStatus.NOT_FOUND and unknown.stdout == ""
    assert unknown.stderr == f"factoryctl: no loop or bead 'bd-9' in {state}/loops.sqlite3\n"
    for argv in ((), ("bd-1",), ("--json",)):
        none = factoryctl(tmp_path / "empty", *argv)
        assert none.returncode == ExitStatus.NOT_FOUND
        assert "no loops database at" in none.stderr and "no loop has run yet" in none.stderr
    assert not (tmp_path / "empty").exists()


def test_a_writer_holding_the_lock_does_not_block_it(state: Path) -> None:
    writer = sqlite3.connect(state / "loops.sqlite3", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a loop mid-transition
        writer.execute("UPDATE loops SET updated_at = 0")
        done = factoryctl(state, "--json")
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert done.returncode == ExitStatus.SUCCESS, done.stderr
    assert len(orjson.loads(done.stdout)["loops"]) == 3


def test_with_no_state_dir_given_it_reads_the_one_the_running_daemon_uses(
    factoryd: Any, stored: tuple[Path, FactoryLoopState], tmp_path: Path
) -> None:
    """factoryd started with --state-dir: `factoryctl loops` finds that store through the
    daemon's status, without --state-dir or $FACTORY_STATE_DIR."""
    shutil.copytree(stored[0], tmp_path / "state")  # the harness's factoryd state dir
    d = factoryd("""
        [supervisor]
        strategy = "one_for_one"
    """).start()
    env = {k: v for k, v in os.environ.items() if k != "FACTORY_STATE_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "supervisor.ctl.cli", "--runtime-dir", str(d.runtime_dir),
         "loops", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {loop["loop_id"] for loop in orjson.loads(done.stdout)["loops"]} == {
        "bd-1.1", "bd-2.1", "bd-1.2"
    }  # fmt: skip


def test_a_loop_the_dispatcher_gave_up_on_is_not_shown_running(
    stored: tuple[Path, FactoryLoopState], tmp_path: Path
) -> None:
    """bd-2.1 died in Auditing and was failed past its resumes: its own record stays in
    auditing, the dispatcher's says failed; the table and the one-loop view say so."""
    state = tmp_path / "state"
    shutil.copytree(stored[0], state)
    records = DispatchRecords(state / "dispatcher.sqlite3")
    records.begin("bd-2.1", "bd-2", 1, state="running")
    records.end("bd-2.1", "failed", "the loop died 3 times")
    records.begin("bd-1.1", "bd-1", 1, state="running")  # live: shown as it is
    records.close()
    table = factoryctl(state).stdout
    assert re.search(r"^bd-2\.1\s+bd-2\s+failed:auditing\s", table, re.M), table
    assert re.search(r"^bd-1\.1\s+bd-1\s+verifying\s", table, re.M), table
    one = factoryctl(state, "bd-2.1").stdout
    assert "failed:auditing: the loop died 3 times" in one.splitlines()[0]
    loops = {lp["loop_id"]: lp for lp in orjson.loads(factoryctl(state, "--json").stdout)["loops"]}
    assert loops["bd-2.1"]["phase"] == "auditing"  # JSON keeps the loop's own phase
    assert loops["bd-2.1"]["dispatch"] == {"state": "ended", "outcome": "failed",
                                           "reason": "the loop died 3 times"}  # fmt: skip
    assert loops["bd-1.2"]["dispatch"] is None
