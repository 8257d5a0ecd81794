"""The loop's state machine: every edge of fs-104/170..176 by table, every other
(phase, event) pair refused, and the invariants under random event sequences."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from procs.loop import (
    EDGES,
    EVENT_TYPES,
    FactoryLoopState,
    FactoryPhase,
    IllegalTransition,
    LoopLimits,
    transition,
)
from procs.loop.events import (
    Aborted,
    AuditorWroteTest,
    CodeWritten,
    GauntletFailed,
    GauntletPassed,
    LoopEvent,
    PushConflict,
    Pushed,
    PushError,
    RebaseConflict,
    Rebased,
    RedConfirmed,
    RedRefused,
    RefactorKept,
    RefactorReverted,
    RefactorSkipped,
    RequirementsComplete,
    ReviewDone,
    TcrFailed,
    TcrPassed,
)

P = FactoryPhase
GOLDEN = "g" * 40


def state(**fields: Any) -> FactoryLoopState:
    base = FactoryLoopState(
        loop_id="loop-1", bead_id="bd-1", attempt=1, workspace="/ws", golden_hash=GOLDEN,
        limits=LoopLimits(max_impl_attempts=3, refactor_interval=3, max_red_attempts=2,
                          max_iterations=5),
    )  # fmt: skip
    return dataclasses.replace(base, **fields)


# One example event of each type, for the exhaustive illegal-pair check.
EXAMPLES: dict[type, LoopEvent] = {
    AuditorWroteTest: AuditorWroteTest(head="r1", reasoning="wrote test_add"),
    RequirementsComplete: RequirementsComplete("REQUIREMENTS_COMPLETE"),
    RedConfirmed: RedConfirmed("1 failed"),
    RedRefused: RedRefused("collection error", head=GOLDEN),
    CodeWritten: CodeWritten(head="w1", summary="added add()"),
    TcrPassed: TcrPassed(head="c1", output="1 passed"),
    TcrFailed: TcrFailed("1 failed", head="r1"),
    GauntletPassed: GauntletPassed(head="c1", report="ok"),
    GauntletFailed: GauntletFailed("lint", head="r1"),
    RefactorKept: RefactorKept(head="c2", summary="-10 lines"),
    RefactorReverted: RefactorReverted("broke test_add", head="c1"),
    RefactorSkipped: RefactorSkipped("nothing to improve"),
    ReviewDone: ReviewDone("fine"),
    Pushed: Pushed(head="c9"),
    PushConflict: PushConflict("golden moved"),
    PushError: PushError("refused"),
    Rebased: Rebased(head="c3", golden_hash="h" * 40),
    RebaseConflict: RebaseConflict("pkg/a.py"),
    Aborted: Aborted("budget spent"),
}

# (name, fields of the state before, event, expected fields after)
TABLE: list[tuple[str, dict[str, Any], LoopEvent, dict[str, Any]]] = [
    ("auditor wrote a test", {"phase": P.AUDITING, "iteration": 1},
     AuditorWroteTest(head="r2"),
     {"phase": P.VERIFYING_RED, "iteration": 2, "phase_start_commit": "r2", "red_commit": "r2"}),
    ("auditor past max_iterations", {"phase": P.AUDITING, "iteration": 5},
     AuditorWroteTest(head="r6"), {"phase": P.FAILED, "iteration": 5}),
    ("requirements complete", {"phase": P.AUDITING}, RequirementsComplete(),
     {"phase": P.REVIEWING}),
    ("red confirmed", {"phase": P.VERIFYING_RED, "iteration": 1, "red_attempt": 1},
     RedConfirmed("F"), {"phase": P.IMPLEMENTING, "impl_attempt": 1, "red_attempt": 0,
                         "last_feedback": "F"}),
    ("not red: ask the auditor again", {"phase": P.VERIFYING_RED, "iteration": 2},
     RedRefused("exit 5: no tests", head="c1"),
     {"phase": P.AUDITING, "iteration": 1, "red_attempt": 1, "phase_start_commit": "c1",
      "last_feedback": "exit 5: no tests", "red_commit": ""}),
    ("not red, past max_red_attempts", {"phase": P.VERIFYING_RED, "red_attempt": 1},
     RedRefused("passed", head="c1"), {"phase": P.FAILED}),
    ("code written", {"phase": P.IMPLEMENTING, "impl_attempt": 1}, CodeWritten(head="w1"),
     {"phase": P.TCR_CHECKING, "impl_attempt": 1, "phase_start_commit": "w1"}),
    ("tcr passed: judged next, nothing committed", {"phase": P.TCR_CHECKING, "commits": 2,
                                                     "phase_start_commit": "w3"},
     TcrPassed(head="w3"), {"phase": P.VERIFYING, "commits": 2, "phase_start_commit": "w3",
                            "green_commit": GOLDEN}),
    ("tcr failed: revert, retry", {"phase": P.TCR_CHECKING, "impl_attempt": 1, "reverts": 0},
     TcrFailed("boom", head="r1"),
     {"phase": P.IMPLEMENTING, "impl_attempt": 2, "reverts": 1, "last_feedback": "boom",
      "phase_start_commit": "r1"}),
    ("tcr failed at max_impl_attempts", {"phase": P.TCR_CHECKING, "impl_attempt": 3},
     TcrFailed("boom", head="r1"), {"phase": P.FAILED, "reverts": 1}),
    ("verified: now committed green", {"phase": P.VERIFYING, "greens": 0, "commits": 0,
                                        "phase_start_commit": "w1", "red_commit": "r1"},
     GauntletPassed(head="c1"),
     {"phase": P.AUDITING, "greens": 1, "greens_since_refactor": 1, "commits": 1,
      "green_commit": "c1", "phase_start_commit": "c1", "red_commit": "", "impl_attempt": 0}),
    ("verified, refactor due", {"phase": P.VERIFYING, "greens": 2, "greens_since_refactor": 2,
                                "commits": 2},
     GauntletPassed(head="c3"), {"phase": P.REFACTORING, "greens": 3, "greens_since_refactor": 3,
                                 "commits": 3, "green_commit": "c3"}),
    ("verified after a rebase: push", {"phase": P.VERIFYING, "rebased": True, "greens": 1,
                                       "commits": 1, "green_commit": "c5",
                                       "phase_start_commit": "c5"},
     GauntletPassed(head="c5"), {"phase": P.PUSHING, "rebased": False, "greens": 1,
                                 "commits": 1, "green_commit": "c5"}),
    ("gauntlet failed: revert, retry", {"phase": P.VERIFYING, "impl_attempt": 1, "commits": 1},
     GauntletFailed("cheat", head="r1"),
     {"phase": P.IMPLEMENTING, "impl_attempt": 2, "reverts": 1, "phase_start_commit": "r1",
      "commits": 1, "last_feedback": "cheat"}),
    ("gauntlet failed at max_impl_attempts", {"phase": P.VERIFYING, "impl_attempt": 3},
     GauntletFailed("cheat", head="r1"), {"phase": P.FAILED}),
    ("gauntlet failed after a rebase", {"phase": P.VERIFYING, "rebased": True},
     GauntletFailed("red", head="c1"), {"phase": P.FAILED}),
    ("refactor kept", {"phase": P.REFACTORING, "commits": 3, "greens_since_refactor": 3},
     RefactorKept(head="c4"), {"phase": P.AUDITING, "commits": 4, "green_commit": "c4",
                               "greens_since_refactor": 0, "refactor_commit": "c4"}),
    ("refactor reverted", {"phase": P.REFACTORING, "reverts": 1, "greens_since_refactor": 3},
     RefactorReverted("red", head="c3"), {"phase": P.AUDITING, "reverts": 2,
                                          "greens_since_refactor": 0, "refactor_commit": "c3"}),
    ("refactor skipped", {"phase": P.REFACTORING, "commits": 3, "greens_since_refactor": 3,
                          "phase_start_commit": "c3"},
     RefactorSkipped(), {"phase": P.AUDITING, "commits": 3, "reverts": 0,
                         "greens_since_refactor": 0, "refactor_commit": "c3"}),
    ("auditor wrote no test", {"phase": P.AUDITING, "iteration": 2},
     RedRefused("no new test", head="c1"),
     {"phase": P.AUDITING, "iteration": 2, "red_attempt": 1, "last_feedback": "no new test"}),
    ("auditor wrote no test, past max_red_attempts", {"phase": P.AUDITING, "red_attempt": 1},
     RedRefused("no new test", head="c1"), {"phase": P.FAILED}),
    ("review done", {"phase": P.REVIEWING}, ReviewDone(), {"phase": P.PUSHING}),
    ("pushed", {"phase": P.PUSHING}, Pushed(head="c9"), {"phase": P.COMPLETE}),
    ("push conflict", {"phase": P.PUSHING}, PushConflict("moved"), {"phase": P.REBASING}),
    ("push error", {"phase": P.PUSHING}, PushError("denied"), {"phase": P.FAILED}),
    ("rebased", {"phase": P.REBASING}, Rebased(head="c5", golden_hash="h" * 40),
     {"phase": P.VERIFYING, "rebased": True, "green_commit": "c5", "golden_hash": "h" * 40}),
    ("rebase conflict", {"phase": P.REBASING}, RebaseConflict("a.py"), {"phase": P.FAILED}),
    *[(f"aborted in {phase.value}", {"phase": phase}, Aborted("budget"),
       {"phase": P.FAILED, "reason": "budget"}) for phase in P if not phase.terminal],
]  # fmt: skip


@pytest.mark.parametrize(("before", "event", "after"), [row[1:] for row in TABLE],
                         ids=[row[0] for row in TABLE])  # fmt: skip
def test_each_edge(before: dict[str, Any], event: LoopEvent, after: dict[str, Any]) -> None:
    old = state(**before)
    new = transition(old, event)
    assert {name: getattr(new, name) for name in after} == after
    assert new.seq == old.seq + 1
    assert new.phase in EDGES[(old.phase, type(event))]
    if new.phase is P.FAILED:
        assert new.reason


def test_the_table_covers_every_edge() -> None:
    covered = {(row[1]["phase"], type(row[2])) for row in TABLE}
    assert covered == set(EDGES)


@pytest.mark.parametrize("phase", list(P), ids=[p.value for p in P])
def test_every_other_pair_is_illegal(phase: FactoryPhase) -> None:
    for kind in EVENT_TYPES:
        if (phase, kind) in EDGES:
            continue
        with pytest.raises(IllegalTransition, match=f"from phase {phase.value} on {kind.__name__}"):
            transition(state(phase=phase), EXAMPLES[kind])


def test_state_and_limits_are_checked_once() -> None:
    with pytest.raises(ValueError, match="bead_id"):
        state(bead_id="")
    with pytest.raises(ValueError, match="max_impl_attempts"):
        LoopLimits(max_impl_attempts=0)
    with pytest.raises(ValueError, match="attempt must be"):
        dataclasses.replace(state(), attempt=0)
    fresh = state()
    assert fresh.phase_start_commit == GOLDEN == fresh.green_commit == fresh.refactor_commit


@given(st.lists(st.sampled_from(list(EXAMPLES.values())), max_size=60))
@settings(max_examples=300, deadline=None)
def test_random_sequences_keep_the_invariants(events: list[LoopEvent]) -> None:
    current = state()
    for event in events:
        if (current.phase, type(event)) not in EDGES:
            with pytest.raises(IllegalTransition):
                transition(current, event)
            continue
        current = _checked_step(current, event)


def _checked_step(old: FactoryLoopState, event: LoopEvent) -> FactoryLoopState:
    new = transition(old, event)
    limits = old.limits
    assert not old.phase.terminal
    assert new.commits >= old.commits and new.reverts >= old.reverts
    # only a kept commit counts: a green one made after the gauntlet passed (which names
    # it), or a refactor's; never the suite's pass (TcrPassed) nor a rebase's re-check
    if isinstance(event, RefactorKept | GauntletPassed) and not old.rebased:
        assert new.commits == old.commits + 1
        assert new.green_commit == new.phase_start_commit == event.head
        assert new.red_commit == ""
    else:
        assert new.commits == old.commits
    assert new.greens >= old.greens
    assert new.seq == old.seq + 1
    if new.phase is P.REFACTORING:
        assert new.greens_since_refactor >= limits.refactor_interval
    assert new.impl_attempt <= limits.max_impl_attempts
    assert new.iteration <= limits.max_iterations
    if new.phase is P.IMPLEMENTING:
        assert new.impl_attempt >= 1
    if new.phase is P.FAILED:
        assert new.reason
    return new


class LoopMachine(RuleBasedStateMachine):
    """Drives one loop with events its phase accepts, checking the invariants each step."""

    def __init__(self) -> None:
        super().__init__()
        self.state = state()
        self.refactors = 0
        self.refactors_kept = 0

    def _legal(self, kinds: list[type]) -> list[type]:
        return [kind for kind in kinds if (self.state.phase, kind) in EDGES]

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        legal = self._legal(list(EVENT_TYPES))
        if not legal:
            event = data.draw(st.sampled_from(list(EXAMPLES.values())))
            with pytest.raises(IllegalTransition):
                transition(self.state, event)
            return
        kind = data.draw(st.sampled_from(legal))
        before = self.state
        self.state = _checked_step(before, EXAMPLES[kind])
        if self.state.phase is P.REFACTORING:
            self.refactors += 1
        if isinstance(EXAMPLES[kind], RefactorKept):
            self.refactors_kept += 1
        if before.phase.terminal:
            raise AssertionError("left a terminal phase")

    @invariant()
    def refactors_bounded_by_greens(self) -> None:
        assert self.refactors <= self.state.greens // self.state.limits.refactor_interval

    @invariant()
    def commits_are_greens_and_kept_refactors(self) -> None:
        # what a Complete loop lands: one green commit per verified green, one per kept
        # refactor, nothing for an implementation the suite or the gauntlet refused
        assert self.state.commits == self.state.greens + self.refactors_kept

    @invariant()
    def failed_has_reason(self) -> None:
        assert (self.state.phase is P.FAILED) == bool(self.state.reason)


TestLoopMachine = LoopMachine.TestCase
TestLoopMachine.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
