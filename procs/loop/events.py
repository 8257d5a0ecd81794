"""What can happen to a loop: one frozen dataclass per event, judged by the loop itself.

An event is what the loop observed (in the repo, in a test run, in the lander's answer),
never what an agent claimed. Events that leave HEAD somewhere carry it as `head`: the
commit the next phase starts from. `ROLE` is who the history credits; `text()` is the
history's content. Names avoid a leading "Test" so that pytest never collects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class AuditorWroteTest:
    """Auditing: the auditor's new failing test is committed alone at `head`."""

    head: str
    reasoning: str = ""
    ROLE: ClassVar[str] = "auditor"

    def text(self) -> str:
        return self.reasoning


@dataclass(frozen=True)
class RequirementsComplete:
    """Auditing: the auditor answered REQUIREMENTS_COMPLETE and added no test."""

    reasoning: str = ""
    ROLE: ClassVar[str] = "auditor"

    def text(self) -> str:
        return self.reasoning


@dataclass(frozen=True)
class RedConfirmed:
    """VerifyingRed: the new tests were collected and fail in their bodies; the tests that
    passed before still pass. `output` is the failing run's, fed to the implementer."""

    output: str = ""
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.output


@dataclass(frozen=True)
class RedRefused:
    """Auditing: the auditor wrote no test, or wrote more than tests. VerifyingRed: not a
    valid red (it passed, did not collect, had no tests, timed out, or broke an old
    test). Either way its work was undone: HEAD is back at `head`."""

    reason: str
    head: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.reason


@dataclass(frozen=True)
class CodeWritten:
    """Implementing: the implementer's turn ended; what it changed is committed, unverified,
    at `head`: a WIP commit on top of the red commit, on no kept history (so a crash in
    TcrChecking or Verifying redoes the check, not the turn). Only a passed gauntlet
    folds it into a green commit; TcrFailed and GauntletFailed drop it."""

    head: str
    summary: str = ""
    ROLE: ClassVar[str] = "implementer"

    def text(self) -> str:
        return self.summary


@dataclass(frozen=True)
class TcrPassed:
    """TcrChecking: the suite passed on the WIP commit at `head` (HEAD did not move). Nothing
    is committed yet: the change is green but unjudged until Verifying's gauntlet."""

    head: str
    output: str = ""
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.output


@dataclass(frozen=True)
class TcrFailed:
    """TcrChecking: the suite failed (or timed out, or tests were touched); non-test code
    was reverted to `head` (the red test commit)."""

    reason: str
    head: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.reason


@dataclass(frozen=True)
class GauntletPassed:
    """Verifying: every gauntlet stage passed on the change, which is now committed green
    at `head`: the red test and the implementation folded into one commit onto the last
    green commit (the only place a green commit is made). After a rebase, `head` is the
    rebased HEAD, unchanged (its commits are green already)."""

    head: str
    report: str = ""
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.report


@dataclass(frozen=True)
class GauntletFailed:
    """Verifying: a stage failed; the unjudged WIP commit was dropped: HEAD is back at
    `head` (the red commit; after a rebase, the rebased HEAD)."""

    reason: str
    head: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.reason


@dataclass(frozen=True)
class RefactorKept:
    """Refactoring: the architect's change passed the suite (every test that passed before
    still passes) and the gauntlet, and is committed at `head`."""

    head: str
    summary: str = ""
    ROLE: ClassVar[str] = "architect"

    def text(self) -> str:
        return self.summary


@dataclass(frozen=True)
class RefactorReverted:
    """Refactoring: the architect's change failed the suite (or lost a passing test, or
    failed the gauntlet) and was reverted to `head`."""

    reason: str
    head: str
    ROLE: ClassVar[str] = "architect"

    def text(self) -> str:
        return self.reason


@dataclass(frozen=True)
class RefactorSkipped:
    """Refactoring: the architect changed nothing."""

    summary: str = ""
    ROLE: ClassVar[str] = "architect"

    def text(self) -> str:
        return self.summary


@dataclass(frozen=True)
class ReviewDone:
    """Reviewing: the reviewer's report (it writes nothing)."""

    report: str = ""
    ROLE: ClassVar[str] = "reviewer"

    def text(self) -> str:
        return self.report


@dataclass(frozen=True)
class Pushed:
    """Pushing: the lander took the loop's commits; golden is at `head`."""

    head: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.head


@dataclass(frozen=True)
class PushConflict:
    """Pushing: golden moved and the commits no longer apply as they are."""

    reason: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.reason


@dataclass(frozen=True)
class PushError:
    """Pushing: the lander refused for a reason a rebase cannot fix."""

    reason: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Rebased:
    """Rebasing: the commits now sit on the new golden, HEAD at `head`."""

    head: str
    golden_hash: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return f"rebased onto {self.golden_hash}"


@dataclass(frozen=True)
class RebaseConflict:
    """Rebasing: the rebase conflicted."""

    reason: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Aborted:
    """Any live phase: the loop must stop (budget spent, agent unusable, cancelled)."""

    reason: str
    ROLE: ClassVar[str] = "loop"

    def text(self) -> str:
        return self.reason


LoopEvent = (
    AuditorWroteTest | RequirementsComplete | RedConfirmed | RedRefused | CodeWritten
    | TcrPassed | TcrFailed | GauntletPassed | GauntletFailed | RefactorKept
    | RefactorReverted | RefactorSkipped | ReviewDone | Pushed | PushConflict | PushError | Rebased
    | RebaseConflict | Aborted
)  # fmt: skip

EVENT_TYPES: tuple[type[LoopEvent], ...] = (
    AuditorWroteTest, RequirementsComplete, RedConfirmed, RedRefused, CodeWritten,
    TcrPassed, TcrFailed, GauntletPassed, GauntletFailed, RefactorKept, RefactorReverted,
    RefactorSkipped, ReviewDone, Pushed, PushConflict, PushError, Rebased, RebaseConflict, Aborted,
)  # fmt: skip
