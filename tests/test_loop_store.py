"""LoopStore: state and history in one transaction per transition, 0600 WAL, restored by
load(), never a doubled history entry, and sound after a writer is SIGKILLed mid-write."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
from pathlib import Path

import pytest

from procs.loop import FactoryLoopState, FactoryPhase, IllegalTransition, LoopLimits
from procs.loop.events import (
    AuditorWroteTest,
    CodeWritten,
    GauntletPassed,
    LoopEvent,
    RedConfirmed,
    TcrPassed,
)
from procs.loop.store import LoopExists, LoopNotFound, LoopStore, StaleState
from tests.waiting import wait_until

GOLDEN = "a" * 40


def fresh(loop_id: str = "loop-1", **limits: int) -> FactoryLoopState:
    return FactoryLoopState(
        loop_id=loop_id, bead_id="bd-7", attempt=1, workspace="/ws/bd-7", golden_hash=GOLDEN,
        limits=LoopLimits(**limits),
    )  # fmt: skip


def cycle_event(state: FactoryLoopState, n: int) -> LoopEvent:
    """The event that moves `state` around one green iteration (n makes heads distinct)."""
    match state.phase:
        case FactoryPhase.AUDITING:
            return AuditorWroteTest(head=f"red{n}", reasoning="x" * 2000)
        case FactoryPhase.VERIFYING_RED:
            return RedConfirmed("1 failed")
        case FactoryPhase.IMPLEMENTING:
            return CodeWritten(head=f"wip{n}", summary="did it")
        case FactoryPhase.TCR_CHECKING:
            return TcrPassed(head=f"green{n}")
        case FactoryPhase.VERIFYING:
            return GauntletPassed("ok")
    raise AssertionError(f"no cycle event in {state.phase}")


def test_advance_persists_state_and_history_and_load_restores(tmp_path: Path) -> None:
    path = tmp_path / "state" / "loops.sqlite3"
    with LoopStore(path) as store:
        state = store.create(fresh(), now=1.0)
        for n in range(7):
            state = store.advance(state, cycle_event(state, n), now=2.0 + n)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with LoopStore(path) as store:
        assert store.load("loop-1") == state
        history = store.history("loop-1")
        assert [h.seq for h in history] == list(range(1, 8))
        assert history[0].role == "auditor" and history[0].content == "x" * 2000
        assert history[0].phase_from is FactoryPhase.AUDITING
        assert history[-1].phase_to is state.phase
        journal = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    assert state.commits == 1 and state.greens == 1


def test_replayed_advance_is_a_noop_and_a_stale_one_is_refused(tmp_path: Path) -> None:
    with LoopStore(tmp_path / "loops.sqlite3") as store:
        start = store.create(fresh(), now=1.0)
        event = cycle_event(start, 0)
        first = store.advance(start, event, now=2.0)
        again = store.advance(start, event, now=3.0)  # killed before it knew it had committed
        assert again == first
        assert len(store.history("loop-1")) == 1
        store.advance(first, cycle_event(first, 1), now=4.0)
        with pytest.raises(StaleState, match="from seq 0 but the store is at seq 2"):
            store.advance(start, event, now=5.0)
        assert len(store.history("loop-1")) == 2


def test_illegal_event_writes_nothing(tmp_path: Path) -> None:
    with LoopStore(tmp_path / "loops.sqlite3") as store:
        start = store.create(fresh(), now=1.0)
        with pytest.raises(IllegalTransition):
            store.advance(start, TcrPassed(head="x"), now=2.0)
        assert store.load("loop-1") == start
        assert store.history("loop-1") == []


def test_create_is_idempotent_for_the_same_loop_only(tmp_path: Path) -> None:
    with LoopStore(tmp_path / "loops.sqlite3") as store:
        state = store.create(fresh(), now=1.0)
        moved = store.advance(state, cycle_event(state, 0), now=2.0)
        assert store.create(fresh(), now=3.0) == moved  # a restart finds where it was
        other = FactoryLoopState(loop_id="loop-1", bead_id="bd-8", attempt=1, workspace="/w",
                                 golden_hash=GOLDEN)  # fmt: skip
        with pytest.raises(LoopExists, match="bead bd-7"):
            store.create(other, now=4.0)
        with pytest.raises(LoopNotFound):
            store.load("nope")
        assert store.loop_ids() == ["loop-1"]
        assert store.created_at("loop-1") == 1.0
        (row,) = store.summaries(now=11.0)
        assert row["bead"] == "bd-7" and row["phase"] == "verifying_red"
        assert row["iteration"] == 1 and row["age_s"] == 10.0
        statistics = store.statistics()
        assert statistics["verifying_red"] == 1 and statistics["failed"] == 0
        assert statistics["history_entries"] == 1
        with pytest.raises(LoopNotFound):
            store.created_at("nope")


def _writer(path: Path, started: Path) -> None:
    """Child: resume the loop from the store and advance it forever."""
    store = LoopStore(path)
    state = store.load("loop-1")
    started.write_text("")
    n = state.seq
    while True:
        n += 1
        state = store.advance(state, cycle_event(state, n), now=float(n))


@pytest.mark.integration
def test_sigkill_mid_write_leaves_whole_transitions(tmp_path: Path) -> None:
    path = tmp_path / "loops.sqlite3"
    with LoopStore(path) as store:
        store.create(fresh(max_iterations=10**9, refactor_interval=10**9), now=0.0)
    seen = 0
    for round_ in range(4):
        started = tmp_path / f"started{round_}"
        pid = os.fork()
        if pid == 0:
            try:
                _writer(path, started)
            finally:
                os._exit(70)
        try:
            wait_until(started.exists, timeout=30, what="the writer to start")
            target = seen + 25
            wait_until(lambda t=target: _count(path) >= t, timeout=60, what=f"{target} entries")
        finally:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        with LoopStore(path) as store:
            assert store.integrity_check() == "ok"
            history = store.history("loop-1")
            state = store.load("loop-1")
            seqs = [h.seq for h in history]
            assert seqs == list(range(1, len(seqs) + 1)), "a gap or a double in the history"
            assert state.seq == len(history), "state and history were not written together"
            assert history[-1].phase_to is state.phase
            assert all(h.content == "x" * 2000 for h in history if h.role == "auditor")
        assert len(history) > seen
        seen = len(history)


def _count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return int(db.execute("SELECT count(*) FROM history").fetchone()[0])
