"""transition(state, event) -> state: the loop's whole state machine, as a pure function.

Every edge of seed fs-104 and fs-170..176 (plus the relaxed-TCR bounds of DESIGN.md):

    Auditing      AuditorWroteTest      -> VerifyingRed   iteration+1 (past max_iterations: Failed)
                  RequirementsComplete  -> Reviewing
                  RedRefused            -> Auditing       red_attempt+1 (no test, or not
                                                          only tests; bounded as below)
    VerifyingRed  RedConfirmed          -> Implementing   impl_attempt = 1
                  RedRefused            -> Auditing       red_attempt+1
                                                          (past max_red_attempts: Failed)
    Implementing  CodeWritten           -> TcrChecking
    TcrChecking   TcrPassed             -> Verifying      (nothing committed yet)
                  TcrFailed             -> Implementing   reverts+1, impl_attempt+1
                                                          (past max_impl_attempts: Failed)
    Verifying     GauntletPassed        -> Refactoring    greens+1, commits+1, every
                                                          refactor_interval greens
                                        -> Auditing       greens+1, commits+1, otherwise
                                        -> Pushing        after a rebase (no new commit)
                  GauntletFailed        -> Implementing   reverts+1, impl_attempt+1 (bounded
                                                          as TcrFailed); after a rebase: Failed
    Refactoring   RefactorKept          -> Auditing       commits+1
                  RefactorReverted      -> Auditing       reverts+1
                  RefactorSkipped       -> Auditing       (nothing changed)
    Reviewing     ReviewDone            -> Pushing
    Pushing       Pushed                -> Complete
                  PushConflict          -> Rebasing
                  PushError             -> Failed
    Rebasing      Rebased               -> Verifying      rebased = True
                  RebaseConflict        -> Failed
    any live      Aborted               -> Failed

Complete and Failed are absorbing: any event there, like any pair not listed, raises
IllegalTransition. Every transition sets seq+1; an event with a `head` makes it the new
phase's start commit (else the phase starts where HEAD is: the old phase's start commit).

`commits` counts kept commits only: a green commit is made once the gauntlet passed
(GauntletPassed, which names it), a refactor commit once the suite and the gauntlet
passed (RefactorKept). The red and WIP commits before them are scratch, never counted,
and every commit counted stays in the loop's history, so a Complete loop lands exactly
`commits` commits. Each Refactoring phase's end (what the architect left) is
`refactor_commit`, the architect's next "lines at the last refactor".
No clock, no I/O: the store stamps the time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
from procs.loop.state import FactoryLoopState, FactoryPhase

P = FactoryPhase


class IllegalTransition(ValueError):
    """An event the current phase has no edge for; the message names both."""

    def __init__(self, phase: FactoryPhase, event: LoopEvent) -> None:
        super().__init__(f"no transition from phase {phase.value} on {type(event).__name__}")
        self.phase = phase
        self.event = event


# (phase, event type) -> the phases it may lead to (the table the tests check against).
EDGES: dict[tuple[FactoryPhase, type], frozenset[FactoryPhase]] = {
    (P.AUDITING, AuditorWroteTest): frozenset({P.VERIFYING_RED, P.FAILED}),
    (P.AUDITING, RequirementsComplete): frozenset({P.REVIEWING}),
    (P.AUDITING, RedRefused): frozenset({P.AUDITING, P.FAILED}),
    (P.VERIFYING_RED, RedConfirmed): frozenset({P.IMPLEMENTING}),
    (P.VERIFYING_RED, RedRefused): frozenset({P.AUDITING, P.FAILED}),
    (P.IMPLEMENTING, CodeWritten): frozenset({P.TCR_CHECKING}),
    (P.TCR_CHECKING, TcrPassed): frozenset({P.VERIFYING}),
    (P.TCR_CHECKING, TcrFailed): frozenset({P.IMPLEMENTING, P.FAILED}),
    (P.VERIFYING, GauntletPassed): frozenset({P.AUDITING, P.REFACTORING, P.PUSHING}),
    (P.VERIFYING, GauntletFailed): frozenset({P.IMPLEMENTING, P.FAILED}),
    (P.REFACTORING, RefactorKept): frozenset({P.AUDITING}),
    (P.REFACTORING, RefactorReverted): frozenset({P.AUDITING}),
    (P.REFACTORING, RefactorSkipped): frozenset({P.AUDITING}),
    (P.REVIEWING, ReviewDone): frozenset({P.PUSHING}),
    (P.PUSHING, Pushed): frozenset({P.COMPLETE}),
    (P.PUSHING, PushConflict): frozenset({P.REBASING}),
    (P.PUSHING, PushError): frozenset({P.FAILED}),
    (P.REBASING, Rebased): frozenset({P.VERIFYING}),
    (P.REBASING, RebaseConflict): frozenset({P.FAILED}),
    **{(phase, Aborted): frozenset({P.FAILED}) for phase in P if not phase.terminal},
}


def transition(state: FactoryLoopState, event: LoopEvent) -> FactoryLoopState:
    """The state after `event` in `state`; raises IllegalTransition where no edge exists."""
    phase = state.phase
    if (phase, type(event)) not in EDGES:
        raise IllegalTransition(phase, event)
    limits = state.limits
    new: dict[str, Any] = {}
    match event:
        case Aborted(reason=reason):
            new = _failed(reason)
        case AuditorWroteTest(head=head):
            if state.iteration >= limits.max_iterations:
                new = _failed(f"max_iterations ({limits.max_iterations}) red tests reached")
            else:
                new = {"phase": P.VERIFYING_RED, "iteration": state.iteration + 1,
                       "phase_start_commit": head, "red_commit": head}  # fmt: skip
        case RequirementsComplete():
            new = {"phase": P.REVIEWING, "last_feedback": ""}
        case RedConfirmed(output=output):
            new = {"phase": P.IMPLEMENTING, "impl_attempt": 1, "red_attempt": 0,
                   "last_feedback": output}  # fmt: skip
        case RedRefused(reason=reason, head=head):
            tries = state.red_attempt + 1
            if tries >= limits.max_red_attempts:
                new = _failed(f"no valid red test after {tries} tries: {reason}")
            else:
                undo = 1 if phase is P.VERIFYING_RED else 0  # the test counted on arrival
                new = {"phase": P.AUDITING, "red_attempt": tries, "last_feedback": reason,
                       "iteration": state.iteration - undo, "phase_start_commit": head,
                       "red_commit": ""}  # fmt: skip
        case CodeWritten(head=head):
            new = {"phase": P.TCR_CHECKING, "phase_start_commit": head}
        case TcrPassed(head=head):
            new = {"phase": P.VERIFYING, "phase_start_commit": head, "last_feedback": ""}
        case TcrFailed(reason=reason, head=head) | GauntletFailed(reason=reason, head=head):
            new = _implementation_failed(state, reason, head)
        case GauntletPassed(head=head):
            new = _verified(state, head)
        case RefactorKept(head=head):
            new = {"phase": P.AUDITING, "commits": state.commits + 1, "green_commit": head,
                   "phase_start_commit": head, "greens_since_refactor": 0,
                   "refactor_commit": head}  # fmt: skip
        case RefactorReverted(reason=reason, head=head):
            new = {"phase": P.AUDITING, "reverts": state.reverts + 1, "last_feedback": reason,
                   "phase_start_commit": head, "greens_since_refactor": 0,
                   "refactor_commit": head}  # fmt: skip
        case RefactorSkipped():
            new = {"phase": P.AUDITING, "greens_since_refactor": 0,
                   "refactor_commit": state.phase_start_commit}  # fmt: skip
        case ReviewDone():
            new = {"phase": P.PUSHING}
        case Pushed():
            new = {"phase": P.COMPLETE}
        case PushConflict(reason=reason):
            new = {"phase": P.REBASING, "last_feedback": reason}
        case PushError(reason=reason):
            new = _failed(f"push refused: {reason}")
        case Rebased(head=head, golden_hash=golden):
            new = {"phase": P.VERIFYING, "rebased": True, "green_commit": head,
                   "golden_hash": golden, "phase_start_commit": head}  # fmt: skip
        case RebaseConflict(reason=reason):
            new = _failed(f"rebase conflict: {reason}")
    return dataclasses.replace(state, seq=state.seq + 1, **new)


def _failed(reason: str) -> dict[str, Any]:
    return {"phase": P.FAILED, "reason": reason}


def _implementation_failed(state: FactoryLoopState, reason: str, head: str) -> dict[str, Any]:
    if state.rebased:
        return _failed(f"the rebased commits fail verification: {reason}")
    reverts = state.reverts + 1
    if state.impl_attempt >= state.limits.max_impl_attempts:
        return {"reverts": reverts, **_failed(
            f"implementation failed {state.impl_attempt} times "
            f"(max_impl_attempts {state.limits.max_impl_attempts}): {reason}"
        )}  # fmt: skip
    return {"phase": P.IMPLEMENTING, "reverts": reverts, "impl_attempt": state.impl_attempt + 1,
            "last_feedback": reason, "phase_start_commit": head}  # fmt: skip


def _verified(state: FactoryLoopState, head: str) -> dict[str, Any]:
    if state.rebased:
        return {"phase": P.PUSHING, "rebased": False, "phase_start_commit": head}
    greens = state.greens + 1
    since = state.greens_since_refactor + 1
    green = {"greens": greens, "greens_since_refactor": since, "impl_attempt": 0,
             "commits": state.commits + 1, "green_commit": head, "phase_start_commit": head,
             "red_commit": ""}  # fmt: skip
    if since >= state.limits.refactor_interval:
        return {"phase": P.REFACTORING, **green}
    return {"phase": P.AUDITING, **green}
