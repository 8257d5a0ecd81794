"""A factory loop's state: its phase, counters and limits, as frozen data (seed fs-100..102).

One loop turns one bead into tested commits. Its whole state is a `FactoryLoopState`;
the only way to a new state is `transition(state, event)` (transition.py), and the store
(store.py) persists each new state with its `HistoryEntry` in one transaction, so a loop
restarted after SIGKILL resumes from `state.phase` at `state.phase_start_commit`.

Generations (DESIGN.md): every state names (bead_id, attempt, loop_id, workspace,
golden_hash); a record about another generation is not this loop's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FactoryPhase(enum.StrEnum):
    """Where a loop is (fs-101). COMPLETE and FAILED are terminal: no event leaves them."""

    AUDITING = "auditing"
    VERIFYING_RED = "verifying_red"
    IMPLEMENTING = "implementing"
    TCR_CHECKING = "tcr_checking"
    VERIFYING = "verifying"
    REFACTORING = "refactoring"
    REVIEWING = "reviewing"
    PUSHING = "pushing"
    REBASING = "rebasing"
    COMPLETE = "complete"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (FactoryPhase.COMPLETE, FactoryPhase.FAILED)


@dataclass(frozen=True)
class LoopLimits:
    """The bounds that keep a loop finite; each must be >= 1.

    `max_impl_attempts`: implementer tries per red test (fs-152). `refactor_interval`:
    greens between architect turns (fs-134, default 3). `max_red_attempts`: auditor tries
    per iteration to write a valid red test. `max_iterations`: red tests per bead.
    """

    max_impl_attempts: int = 3
    refactor_interval: int = 3
    max_red_attempts: int = 3
    max_iterations: int = 50

    def __post_init__(self) -> None:
        for name in ("max_impl_attempts", "refactor_interval", "max_red_attempts",
                     "max_iterations"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"loop limit {name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class FactoryLoopState:
    """Everything a loop needs to resume (fs-100).

    Identity: `loop_id`, `bead_id`, `attempt` (of this bead), `workspace` (path),
    `golden_hash` (the golden commit the workspace was made from). Progress: `phase`,
    `iteration` (red tests accepted so far, the current one included), `greens` (verified
    green iterations), `greens_since_refactor`, `commits` (commits kept: green commits,
    made only once the gauntlet passed, and refactor commits; never decreases, and a
    Complete loop lands exactly this many), `reverts` (implementations, gauntlet results
    or refactors undone),
    `impl_attempt` (the implementer's try at the current red test, 1-based; 0 outside),
    `red_attempt` (the auditor's tries at the current iteration). Commits:
    `phase_start_commit` (HEAD when the current phase began: an interrupted phase is
    redone from it after `git reset --hard`), `green_commit` (the last green commit, or
    the golden hash), `red_commit` (the current iteration's red test commit: what a failed
    implementation is reverted to; the green commit squashes it, so no red commit stays in
    the history), `refactor_commit` (HEAD when the last Refactoring phase ended, kept,
    reverted or skipped: the code the architect last left; the golden hash before the
    first). `rebased`: a rebase happened, so a passing Verifying pushes.
    `last_feedback`: why the last try failed, for the next prompt. `seq`: transitions
    taken (the history's length). `reason`: why the loop failed (FAILED only).
    """

    loop_id: str
    bead_id: str
    attempt: int
    workspace: str
    golden_hash: str
    limits: LoopLimits = field(default_factory=LoopLimits)
    phase: FactoryPhase = FactoryPhase.AUDITING
    iteration: int = 0
    greens: int = 0
    greens_since_refactor: int = 0
    commits: int = 0
    reverts: int = 0
    impl_attempt: int = 0
    red_attempt: int = 0
    phase_start_commit: str = ""
    green_commit: str = ""
    red_commit: str = ""
    refactor_commit: str = ""
    rebased: bool = False
    last_feedback: str = ""
    seq: int = 0
    reason: str = ""

    def __post_init__(self) -> None:
        for name in ("loop_id", "bead_id", "workspace", "golden_hash"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"loop state {name} must be a non-empty string, got {value!r}")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 1:
            raise ValueError(f"loop state attempt must be an integer >= 1, got {self.attempt!r}")
        if not self.phase_start_commit:
            object.__setattr__(self, "phase_start_commit", self.golden_hash)
        for name in ("green_commit", "refactor_commit"):
            if not getattr(self, name):
                object.__setattr__(self, name, self.golden_hash)


@dataclass(frozen=True)
class HistoryEntry:
    """One transition as the loop's history keeps it (fs-102): the `seq`-th transition,
    in `iteration`, by `role` (auditor, implementer, architect, reviewer, or loop for the
    loop's own checks), from `phase_from` to `phase_to` on `event` (its name), with
    `content` (what the role said or the check found), at `ts` (wall-clock seconds)."""

    loop_id: str
    seq: int
    iteration: int
    role: str
    phase_from: FactoryPhase
    phase_to: FactoryPhase
    event: str
    content: str
    ts: float
