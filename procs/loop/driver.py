"""LoopDriver: runs one bead's loop to Complete or Failed, one persisted phase at a time.

    LoopDriver(store, turns, config, lander, gauntlet).run(state) -> final state

Each step does one phase's work (a role turn, a test run, a commit or revert, a landing)
and ends in exactly one event, which store.advance persists with the new state in one
transaction. Resume: run() first resets the workspace to the stored state's
phase_start_commit (`git reset --hard` + `git clean -fd`), so a phase interrupted by a
crash (an agent turn, a test run, a commit not yet recorded) is redone from its start;
work that was never recorded is redone, work that was recorded is never redone. A loop
killed after store.advance but before the next step only redoes that next step.

What the loop judges, never trusting the agent's words (DESIGN.md "TDD-TCR"):
- Auditing: the auditor changed only test files (else reverted: RedRefused) and changed
  something (else REQUIREMENTS_COMPLETE if it said so, or RedRefused); the test is
  committed alone (the red commit).
- VerifyingRed: judge_red against the suite at the last green commit.
- Implementing: the implementer's work is committed unverified (a WIP commit on the red
  commit: scratch, so that a crash redoes the check and not the turn; never counted).
- TcrChecking: a change touching tests or harness files since the red commit is refused
  whatever the tests say; else the suite must be green (HEAD stays the WIP commit);
  else revert to the red commit.
- Verifying: the gauntlet on the WIP tree against the last green commit. Passed: only now
  is the change committed green, the red test and the implementation folded into one
  commit onto the last green commit, with exactly the tree the gauntlet judged (and
  `commits` counts it). Failed: back to the red commit (the WIP is dropped). So a cheat
  the suite cannot see is never in a green commit, and no commit counted is dropped.
  After a rebase: the gauntlet on golden..HEAD, nothing new committed.
- Refactoring: the suite after the architect's change must be green and still pass every
  test that passed before it (by id), and the change must pass the gauntlet (the
  architect is the one role that may edit tests: a weakened assertion keeps its test id);
  only then is it committed.
Every suite run goes through procs.sandbox (suite.run_suite) with the config's timeout.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from ipc import service_report
from ipc.signals import LoopComplete, LoopFailed, LoopSpawned, Signal
from procs.loop import git, prompts, suite, tcr
from procs.loop.events import (
    Aborted,
    AuditorWroteTest,
    CodeWritten,
    GauntletFailed,
    GauntletPassed,
    LoopEvent,
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
from procs.loop.lander import Lander
from procs.loop.state import FactoryLoopState, FactoryPhase
from procs.loop.store import LoopStore
from procs.loop.turns import (
    AgentCrashed,
    AgentTurns,
    Turn,
    TurnFailed,
    parse_result,
    session_history,
)
from procs.testfiles import is_harness_path, is_test_path

P = FactoryPhase
MAX_FEEDBACK_CHARS = 8 * 1024
AGENT_CRASH_RETRIES = 2  # per phase: an agent killed mid-turn, then one more


@dataclass(frozen=True)
class LoopConfig:
    """What a loop needs besides its state: the bead's `requirements`, the project's
    `language` and pytest `test_command`, the suite's timeout and sandbox, the
    architect's hard limits."""

    requirements: str
    test_command: tuple[str, ...]
    language: str = "Python"
    suite_timeout_s: float = 300.0
    sandbox_mode: str = "bwrap"
    memory_mb: int = 4096
    hard_limits: dict[str, int] = field(
        default_factory=lambda: {"max_function_lines": 40, "max_file_lines": 400}
    )

    def __post_init__(self) -> None:
        if not self.test_command:
            raise ValueError("loop config: test_command is empty")
        if not self.requirements.strip():
            raise ValueError("loop config: the bead has no requirements text")


class Gauntlet(Protocol):
    """Verifying's checks (step 8 brings the stages); None when HEAD passes, else why."""

    def check(self, state: FactoryLoopState) -> str | None: ...


class SuiteGauntlet:
    """Until step 8: the project's suite alone, green on the work tree. (A refactor is not
    checked by it again: the refactor's own check already ran the suite on that tree.)"""

    def __init__(self, config: LoopConfig) -> None:
        self.config = config

    def check(self, state: FactoryLoopState) -> str | None:
        run = _run_suite(Path(state.workspace), self.config)
        return None if run.green else run.why_not_green()


class LoopDriver:
    """Drives one loop; `clock` gives the wall-clock time stamped on history entries."""

    def __init__(
        self,
        store: LoopStore,
        turns: AgentTurns,
        config: LoopConfig,
        lander: Lander,
        *,
        gauntlet: Gauntlet | None = None,
        clock: Callable[[], float] = time.time,
        publish: Callable[[Signal], None] | None = None,
    ) -> None:
        self.store = store
        self.turns = turns
        self.config = config
        self.lander = lander
        self.gauntlet = gauntlet if gauntlet is not None else SuiteGauntlet(config)
        self.clock = clock
        self.publish = publish if publish is not None else _drop
        self._green_run_at: tuple[str, suite.SuiteRun] | None = None  # the latest only
        # What the role refused in the implementer's last turn, by the WIP commit it made:
        # told to the next attempt with the failure (lost in a crash: only a hint).
        self._refused_at: tuple[str, str] | None = None

    def run(self, state: FactoryLoopState) -> FactoryLoopState:
        """Create or resume the loop in the store and run it to Complete or Failed.

        Publishes LoopSpawned when it starts (each start: a restart is a new spawn) and
        LoopComplete or LoopFailed at the end, also when the stored loop had already
        ended (a loop killed before it published): signals only say "look".
        """
        state = self.store.create(state, self.clock())
        self.publish(LoopSpawned(loop_id=state.loop_id, task_id=state.bead_id,
                                 phase=state.phase.value))  # fmt: skip
        if not state.phase.terminal:
            tcr.reset_to(Path(state.workspace), state.phase_start_commit)
        while not state.phase.terminal:
            state = self.step(state)
        _pin(state)  # an ended loop resumes nothing: its scratch commits become unreachable
        if state.phase is P.COMPLETE:
            began = self.store.created_at(state.loop_id)
            duration_ms = max(0, round((self.clock() - began) * 1000))
            self.publish(LoopComplete(commits=state.commits, reverts=state.reverts,
                                      duration_ms=duration_ms, loop_id=state.loop_id))  # fmt: skip
        else:
            self.publish(LoopFailed(loop_id=state.loop_id, reason=state.reason))
        return state

    def step(self, state: FactoryLoopState) -> FactoryLoopState:
        """Do the current phase's work and persist its event; return the new state. An
        agent that died mid-turn (AgentCrashed) is not an answer: the phase runs again
        from its starting commit with a new agent, as after a resume, at most
        AGENT_CRASH_RETRIES times; then, or on any other TurnFailed, the loop fails."""
        _pin(state)
        for crashes in itertools.count():
            try:
                event = self._work(state)
            except AgentCrashed as exc:
                if crashes < AGENT_CRASH_RETRIES:
                    service_report.report("loop", "agent_crashed", loop_id=state.loop_id,
                                          phase=state.phase.value, retry=crashes + 1,
                                          reason=str(exc)[:300])  # fmt: skip
                    tcr.reset_to(Path(state.workspace), state.phase_start_commit)
                    continue
                event = Aborted(f"{state.phase.value}: {exc} (the agent died "
                                f"{crashes + 1} times in this phase)")  # fmt: skip
            except TurnFailed as exc:
                event = Aborted(f"{state.phase.value}: {exc}")
            return self.store.advance(state, event, self.clock())
        raise AssertionError("unreachable")  # pragma: no cover

    def _work(self, state: FactoryLoopState) -> LoopEvent:
        workspace = Path(state.workspace)
        match state.phase:
            case P.AUDITING:
                return self._audit(state, workspace)
            case P.VERIFYING_RED:
                return self._verify_red(state, workspace)
            case P.IMPLEMENTING:
                reply = self.turns.implementer(self._turn("implementer", state))
                summary = _summary(reply.text)
                head = tcr.commit(workspace, f"wip: implementation attempt {state.impl_attempt}",
                                  allow_empty=True)  # fmt: skip
                self._refused_at = (head, _refused(reply.refusals)) if reply.refusals else None
                return CodeWritten(head=head, summary=summary)
            case P.TCR_CHECKING:
                return self._tcr_check(state, workspace)
            case P.VERIFYING:
                return self._verify(state, workspace)
            case P.REFACTORING:
                return self._refactor(state, workspace)
            case P.REVIEWING:
                return ReviewDone(self.turns.reviewer(self._turn("reviewer", state)).text)
            case P.PUSHING:
                return self.lander.land(state)
            case P.REBASING:
                return self.lander.rebase(state)
        raise AssertionError(f"no work for phase {state.phase}")

    def _audit(self, state: FactoryLoopState, workspace: Path) -> LoopEvent:
        reply = self.turns.auditor(self._turn("auditor", state))
        result = parse_result(reply.text) or {}
        changed = git.changed_paths(workspace, state.phase_start_commit)
        if not changed:
            if result.get("status") == "requirements_complete":
                return RequirementsComplete(reply.text)
            return RedRefused(_refused(reply.refusals) + "the auditor wrote no test",
                              head=state.phase_start_commit)  # fmt: skip
        not_tests = [str(p) for p in changed if not is_test_path(p) or is_harness_path(p)]
        if not_tests:
            head = tcr.reset_to(workspace, state.phase_start_commit)
            return RedRefused(f"the auditor may write tests only; it changed {not_tests}", head)
        head = tcr.commit(workspace, f"red: {result.get('test', 'a new failing test')}")
        return AuditorWroteTest(head=head, reasoning=reply.text)

    def _verify_red(self, state: FactoryLoopState, workspace: Path) -> LoopEvent:
        before = self._green_run(state, workspace)
        after = _run_suite(workspace, self.config)
        why = suite.judge_red(before, after)
        if why is None:
            return RedConfirmed(_clip(after.output))
        head = tcr.reset_to(workspace, state.green_commit)
        return RedRefused(f"{why}\n{_clip(after.output)}", head=head)

    def _tcr_check(self, state: FactoryLoopState, workspace: Path) -> LoopEvent:
        refused = self._refused_at
        told = refused[1] if refused is not None and refused[0] == state.phase_start_commit else ""
        touched = tcr.touched_tests(workspace, state.red_commit)
        if touched:
            head = tcr.revert_non_test_code(workspace, state.red_commit)
            names = [str(p) for p in touched]
            return TcrFailed(f"{told}the implementer may not change tests or harness files: "
                             f"{names}", head=head)  # fmt: skip
        run = _run_suite(workspace, self.config)
        if not run.green:
            head = tcr.revert_non_test_code(workspace, state.red_commit)
            return TcrFailed(f"{told}{run.why_not_green()}\n{_clip(run.output)}", head=head)
        # Green, not yet judged: nothing is committed until the gauntlet passes. HEAD stays
        # the WIP commit (this phase's start). The run is the suite of the tree the green
        # commit will have, kept for VerifyingRed's "before" if Verifying commits it.
        self._green_run_at = (state.phase_start_commit, run)
        return TcrPassed(head=state.phase_start_commit, output=_clip(run.output))

    def _verify(self, state: FactoryLoopState, workspace: Path) -> LoopEvent:
        why = self.gauntlet.check(state)
        if why is not None:
            back = state.red_commit or state.phase_start_commit  # after a rebase: no red
            return GauntletFailed(why, head=tcr.reset_to(workspace, back))
        if state.rebased:  # the rebased commits are green already: nothing to fold
            return GauntletPassed(head=state.phase_start_commit, report="gauntlet passed")
        head = _fold(workspace, state.phase_start_commit, state.green_commit,
                     f"green: iteration {state.iteration}")  # fmt: skip
        if self._green_run_at is not None and self._green_run_at[0] == state.phase_start_commit:
            self._green_run_at = (head, self._green_run_at[1])  # the same tree
        return GauntletPassed(head=head, report="gauntlet passed")

    def _refactor(self, state: FactoryLoopState, workspace: Path) -> LoopEvent:
        before = self._green_run(state, workspace)  # first: it may reset the work tree
        reply = self.turns.architect(self._turn("architect", state))
        if not git.changed_paths(workspace, state.phase_start_commit):
            return RefactorSkipped(_summary(reply.text))
        run = _run_suite(workspace, self.config)
        lost = sorted(set(before.with_outcome(suite.Case.PASSED))
                      - set(run.with_outcome(suite.Case.PASSED)))  # fmt: skip
        if not run.green or lost:
            head = tcr.reset_to(workspace, state.phase_start_commit)
            why = run.why_not_green() or f"the refactor lost passing tests: {lost[:10]}"
            return RefactorReverted(f"{why}\n{_clip(run.output)}", head=head)
        # The gauntlet judges the architect's change (green_commit, this phase's start, to
        # the work tree) as it judges an implementer's; SuiteGauntlet would only repeat
        # the suite run just made.
        judged = None if isinstance(self.gauntlet, SuiteGauntlet) else self.gauntlet.check(state)
        if judged is not None:
            head = tcr.reset_to(workspace, state.phase_start_commit)
            return RefactorReverted(f"the refactor failed the gauntlet:\n{judged}", head=head)
        head = tcr.commit(workspace, f"refactor after {state.greens} greens")
        self._green_run_at = (head, run)
        return RefactorKept(head=head, summary=_summary(reply.text))

    def _green_run(self, state: FactoryLoopState, workspace: Path) -> suite.SuiteRun:
        """The suite at the last green commit (cached; else run there and come back)."""
        if self._green_run_at is not None and self._green_run_at[0] == state.green_commit:
            return self._green_run_at[1]
        tcr.reset_to(workspace, state.green_commit)
        try:
            run = _run_suite(workspace, self.config)
        finally:
            tcr.reset_to(workspace, state.phase_start_commit)
        self._green_run_at = (state.green_commit, run)
        return run

    def _turn(self, role: str, state: FactoryLoopState) -> Turn:
        workspace = Path(state.workspace)
        return Turn(role=role, workspace=workspace, system_prompt=prompts.system_prompt(role),
                    prompt=self._prompt(role, state), state=state)  # fmt: skip

    def _prompt(self, role: str, state: FactoryLoopState) -> str:
        config = self.config
        command = " ".join(config.test_command)
        history = self.store.history(state.loop_id)
        if role == "auditor":
            return prompts.render(
                role, language=config.language, test_command=command,
                requirements=config.requirements, iteration=state.iteration + 1,
                refactor_interval=state.limits.refactor_interval,
                last_feedback=state.last_feedback,
            )  # fmt: skip
        if role == "implementer":
            reasoning = next((h.content for h in reversed(history)
                              if h.event == AuditorWroteTest.__name__), "")  # fmt: skip
            return prompts.render(
                role, language=config.language, test_command=command,
                requirements=config.requirements, auditor_reasoning=reasoning,
                test_output=state.last_feedback, attempt=state.impl_attempt,
                max_attempts=state.limits.max_impl_attempts,
            )  # fmt: skip
        if role == "architect":
            before, now = _code_lines(Path(state.workspace), state.refactor_commit)
            return prompts.render(
                role, language=config.language, test_command=command, greens=state.greens,
                session_history=session_history(config.requirements, history),
                hard_limits=config.hard_limits, cupid_properties=list(prompts.CUPID_PROPERTIES),
                lines_before=before, lines_now=now,
            )  # fmt: skip
        statistics = {"iterations": state.iteration, "greens": state.greens,
                      "commits": state.commits, "reverts": state.reverts}  # fmt: skip
        diff = git.git(Path(state.workspace), "diff", state.golden_hash, "HEAD")
        return prompts.render(role, requirements=config.requirements, statistics=statistics,
                              diff=_clip(diff, 32 * 1024))  # fmt: skip


PINS = {"phase-start": "phase_start_commit", "red": "red_commit", "green": "green_commit"}


def _pin(state: FactoryLoopState) -> None:
    """Keep the commits the state names reachable (refs/factory/*), so that no git gc can
    prune a commit a resumed phase resets to (a red or WIP commit is on no branch). An
    ended loop (Complete, Failed) is never resumed: its pins go, so that a dropped WIP
    commit (a cheat the gauntlet refused, say) is reachable from no ref."""
    lines = []
    for name, attribute in PINS.items():
        commit = "" if state.phase.terminal else getattr(state, attribute)
        lines.append(f"update refs/factory/{name} {commit}" if commit
                     else f"delete refs/factory/{name}")  # fmt: skip
    # one git process and one ref transaction for all three (was three processes a step)
    git.git(Path(state.workspace), "update-ref", "--stdin", stdin="\n".join(lines) + "\n")


def _fold(workspace: Path, wip: str, onto: str, message: str) -> str:
    """Commit `wip`'s tree (the red test and the implementation: exactly what was judged)
    as one commit whose parent is `onto`, and move the branch and work tree there. Two git
    processes; the WIP and red commits drop out of the history. Returns the new HEAD."""
    tree = f"{wip}^{{tree}}"
    commit = git.git(workspace, "commit-tree", "-p", onto, "-m", message, tree).strip()
    git.git(workspace, "reset", "-q", "--hard", commit)
    return commit


def _drop(signal: Signal) -> None:
    """The default publish: no bus (the one-shot runner, tests)."""


def _run_suite(workspace: Path, config: LoopConfig) -> suite.SuiteRun:
    policy = suite.tcr_policy(workspace, timeout_s=config.suite_timeout_s,
                              memory_mb=config.memory_mb, mode=config.sandbox_mode)  # fmt: skip
    return suite.run_suite(workspace, config.test_command, policy)


def _code_lines(workspace: Path, since: str) -> tuple[int, int]:
    """Lines of non-test Python code at `since` (the last refactor's end) and now (from the
    work tree and numstat)."""
    now = 0
    for name in git.git(workspace, "ls-files", "-z", "--", "*.py").split("\0"):
        path = workspace / name
        if name and not is_test_path(PurePosixPath(name)) and path.is_file():
            now += len(path.read_bytes().splitlines())
    added = deleted = 0
    for line in git.git(workspace, "diff", "--numstat", since, "--", "*.py").splitlines():
        plus, minus, name = line.split("\t", 2)
        if plus != "-" and not is_test_path(PurePosixPath(name)):
            added, deleted = added + int(plus), deleted + int(minus)
    return now - added + deleted, now


def _refused(refusals: tuple[str, ...]) -> str:
    """A turn's role refusals as feedback for the next prompt ("" for none): what the
    role may not do, so that the agent stops trying, never read as a cancel."""
    if not refusals:
        return ""
    lines = "".join(f"- {reason}\n" for reason in refusals[:10])
    return f"Refused in your last turn (your role may not do this; do not try again):\n{lines}\n"


def _summary(text: str) -> str:
    result = parse_result(text) or {}
    summary = result.get("summary")
    return summary if isinstance(summary, str) else _clip(text, 2000)


def _clip(text: str, limit: int = MAX_FEEDBACK_CHARS) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]
