"""The gauntlet in step 7's loop: an implementer whose first attempt games the test (the
suite is green: TcrPassed) is refused at Verifying by cheat_detection before any green
commit is made, the finding is fed back in its next prompt, and its honest second attempt
lands; no commit any ref of the workspace reaches holds the cheat, and `commits` counts
only what landed. An implementer that only cheats fails the loop with nothing committed.
An architect that weakens a test (same test id, suite green) is reverted by the gauntlet.
Real repo, real pytest under bubblewrap, the loop driver with a scripted AgentTurns
double."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ipc.signals import LoopComplete, Signal
from procs.gauntlet import CheatDetection, CompileStage, GauntletConfig, LlmJudge, LoopGauntlet
from procs.loop import FactoryLoopState, FactoryPhase, LoopLimits, git
from procs.loop.driver import LoopConfig, LoopDriver
from procs.loop.events import LoopEvent
from procs.loop.lander import FastForwardLander
from procs.loop.store import LoopStore
from procs.loop.turns import Turn, TurnReply
from tests.helpers import repos
from tests.helpers.loop_repos import CALC, TEST_COMMAND, make_project, write
from tests.helpers.sandbox import bwrap_unusable

pytestmark = pytest.mark.integration
HONEST = "def mul(a, b):\n    return a * b\n"
CHEAT = "def mul(a, b):\n    return 6\n"  # what test_mul expects for (2, 3)
TEST_MUL = "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n"
WEAKENED = "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) is not None\n"


def result(obj: str) -> str:
    return f"Done.\nFACTORY_RESULT {obj}"


class CheatFirstTurns:
    """Auditor: test_mul, then complete. Implementer: first the cheat, then honest code
    (`cheats`: how many attempts cheat). Architect: nothing. Reviewer: approves. Records
    the implementer's prompts."""

    def __init__(self, cheats: int = 1) -> None:
        self.implementer_prompts: list[str] = []
        self.cheats = cheats

    def auditor(self, turn: Turn) -> TurnReply:
        test = turn.workspace / "tests" / "test_mul.py"
        if test.exists():
            return TurnReply(result('{"status": "requirements_complete"}'))
        test.write_text(TEST_MUL)
        return TurnReply(result('{"status": "test_written", "test": "test_mul.py"}'))

    def implementer(self, turn: Turn) -> TurnReply:
        self.implementer_prompts.append(turn.prompt)
        code = CHEAT if len(self.implementer_prompts) <= self.cheats else HONEST
        write(turn.workspace, "calc.py", f"{CALC}\n\n{code}")
        return TurnReply(result('{"status": "implemented"}'))

    def architect(self, turn: Turn) -> TurnReply:
        return TurnReply(result('{"status": "refactored"}'))

    def reviewer(self, turn: Turn) -> TurnReply:
        return TurnReply(result('{"status": "approve", "issues": []}'))


class WeakeningArchitect(CheatFirstTurns):
    """Honest implementer; the architect weakens test_mul: same id, still green."""

    def __init__(self) -> None:
        super().__init__(cheats=0)

    def architect(self, turn: Turn) -> TurnReply:
        write(turn.workspace, "tests/test_mul.py", WEAKENED)
        return TurnReply(result('{"status": "refactored", "summary": "simpler test"}'))


def start(tmp_path: Path, **limits: int) -> tuple[Path, Path, FactoryLoopState, LoopStore]:
    """A project, its bare golden repo, a clone as the workspace, a fresh loop state."""
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)
    source = make_project(tmp_path / "source")
    golden = tmp_path / "golden.git"
    repos.git(tmp_path, "clone", "-q", "--bare", str(source), str(golden))
    workspace = tmp_path / "ws"
    repos.git(tmp_path, "clone", "-q", str(golden), str(workspace))
    state = FactoryLoopState(
        loop_id="loop-1", bead_id="bd-1", attempt=1, workspace=str(workspace),
        golden_hash=git.head(workspace),
        limits=LoopLimits(**{"max_impl_attempts": 2, "refactor_interval": 5,
                             "max_red_attempts": 2, **limits}),
    )  # fmt: skip
    return golden, workspace, state, LoopStore(tmp_path / "state" / "loops.sqlite3")


def cheat_gauntlet(tmp_path: Path) -> LoopGauntlet:
    return LoopGauntlet(
        GauntletConfig(unit_command=(sys.executable, "-m", "pytest", "-q"), timeout_s=120,
                       router_socket=tmp_path / "no-router.sock"),
        [CompileStage(), CheatDetection(), LlmJudge()],
    )  # fmt: skip


CONFIG = LoopConfig(requirements="calc gains mul(a, b), the product.",
                    test_command=TEST_COMMAND, suite_timeout_s=120.0)  # fmt: skip


def assert_no_commit_holds_the_cheat(workspace: Path) -> None:
    """Every commit any ref reaches (branches, remotes, pins, HEAD): the auditor's test as
    written (where it exists), never the cheat's code; no pin of the ended loop is left."""
    reachable = git.git(workspace, "rev-list", "--all").split()
    assert reachable
    for commit in reachable:
        assert CHEAT not in git.git(workspace, "show", f"{commit}:calc.py"), commit
        files = git.git(workspace, "ls-tree", "-r", "--name-only", commit).split()
        if "tests/test_mul.py" in files:
            assert git.git(workspace, "show", f"{commit}:tests/test_mul.py") == TEST_MUL
    assert git.git(workspace, "for-each-ref", "refs/factory") == ""


def test_a_cheating_implementer_is_reverted_with_the_finding_and_an_honest_retry_lands(
    tmp_path: Path,
) -> None:
    golden, workspace, state, store = start(tmp_path)
    gauntlet = cheat_gauntlet(tmp_path)
    turns = CheatFirstTurns()
    signals: list[Signal] = []
    driver = LoopDriver(store, turns, CONFIG, FastForwardLander(golden), gauntlet=gauntlet,
                        publish=signals.append)  # fmt: skip
    final = driver.run(state)
    assert final.phase is FactoryPhase.COMPLETE, final.reason
    assert [e.event for e in store.history("loop-1")][:8] == [
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletFailed",
        "CodeWritten", "TcrPassed", "GauntletPassed",
    ]  # fmt: skip
    retry = turns.implementer_prompts[1]
    assert "[hardcoded_values]" in retry and "calc.py" in retry
    landed = git.commits_between(golden, state.golden_hash, "refs/heads/main")
    assert len(landed) == 1
    assert "return a * b" in repos.git(golden, "show", f"{landed[0]}:calc.py")
    # commits counts what landed: the refused attempt was never a commit of its own
    assert (final.commits, final.reverts, final.greens) == (1, 1, 1)
    complete = signals[-1]
    assert isinstance(complete, LoopComplete) and (complete.commits, complete.reverts) == (1, 1)
    assert_no_commit_holds_the_cheat(workspace)
    assert gauntlet.last is not None
    assert [(s.name, s.outcome.verdict.value) for s in gauntlet.last.stages] == [
        ("compile", "pass"), ("cheat_detection", "pass"), ("llm_judge", "skipped")]  # fmt: skip


def test_an_implementer_that_only_cheats_fails_the_loop_with_nothing_committed(
    tmp_path: Path,
) -> None:
    golden, workspace, state, store = start(tmp_path, max_impl_attempts=1)
    driver = LoopDriver(store, CheatFirstTurns(cheats=9), CONFIG, FastForwardLander(golden),
                        gauntlet=cheat_gauntlet(tmp_path))  # fmt: skip
    final = driver.run(state)
    assert final.phase is FactoryPhase.FAILED and "[hardcoded_values]" in final.reason
    assert [e.event for e in store.history("loop-1")] == [
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletFailed",
    ]  # fmt: skip
    assert (final.commits, final.reverts, final.greens) == (0, 1, 0)
    assert git.commits_between(golden, state.golden_hash, "refs/heads/main") == []
    assert git.is_clean(workspace) and CHEAT not in (workspace / "calc.py").read_text()
    assert_no_commit_holds_the_cheat(workspace)


class Crash(BaseException):
    """Stands in for SIGKILL: nothing in the driver catches it."""


class CrashBeforeRecording(LoopStore):
    """Crashes once, just before persisting the first `kind` event: its git work is done
    (the gauntlet's revert to the red commit), its record is not."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(path)
        self.kind, self.crashed = kind, False

    def advance(self, state: FactoryLoopState, event: LoopEvent, now: float) -> FactoryLoopState:
        if type(event).__name__ == self.kind and not self.crashed:
            self.crashed = True
            raise Crash(self.kind)
        return super().advance(state, event, now)


def test_a_loop_killed_as_the_gauntlet_refuses_resumes_from_the_pinned_wip_commit(
    tmp_path: Path,
) -> None:
    golden, workspace, state, store = start(tmp_path)
    crashing = CrashBeforeRecording(store.path, "GauntletFailed")
    with pytest.raises(Crash):
        LoopDriver(crashing, CheatFirstTurns(), CONFIG, FastForwardLander(golden),
                   gauntlet=cheat_gauntlet(tmp_path)).run(state)  # fmt: skip
    crashing.close()
    stored = store.load("loop-1")
    assert stored.phase is FactoryPhase.VERIFYING and stored.commits == 0
    # HEAD went back to the red commit; only the pin keeps the WIP commit, which the
    # resumed Verifying starts from, through a gc
    assert git.head(workspace) == stored.red_commit != stored.phase_start_commit
    repos.git(workspace, "reflog", "expire", "--expire=now", "--all")
    repos.git(workspace, "gc", "-q", "--prune=now")
    assert git.resolve(workspace, "refs/factory/phase-start") == stored.phase_start_commit
    turns = CheatFirstTurns()
    turns.implementer_prompts.append("the crashed run's first attempt")
    final = LoopDriver(LoopStore(store.path), turns, CONFIG, FastForwardLander(golden),
                       gauntlet=cheat_gauntlet(tmp_path)).run(state)  # fmt: skip
    assert final.phase is FactoryPhase.COMPLETE, final.reason
    assert [e.event for e in store.history("loop-1")][:8] == [
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletFailed",
        "CodeWritten", "TcrPassed", "GauntletPassed",
    ]  # fmt: skip
    landed = git.commits_between(golden, state.golden_hash, "refs/heads/main")
    assert (final.commits, final.reverts) == (len(landed), 1) == (1, 1)
    assert_no_commit_holds_the_cheat(workspace)


def test_an_architect_that_weakens_a_test_is_reverted_by_the_gauntlet(tmp_path: Path) -> None:
    golden, workspace, state, store = start(tmp_path, refactor_interval=1)
    driver = LoopDriver(store, WeakeningArchitect(), CONFIG, FastForwardLander(golden),
                        gauntlet=cheat_gauntlet(tmp_path))  # fmt: skip
    final = driver.run(state)
    assert final.phase is FactoryPhase.COMPLETE, final.reason
    history = store.history("loop-1")
    reverted = next(h for h in history if h.event == "RefactorReverted")
    assert "the refactor failed the gauntlet" in reverted.content
    assert "[weakened_tests]" in reverted.content and "tests/test_mul.py" in reverted.content
    assert (final.commits, final.reverts, final.greens) == (1, 1, 1)
    landed = git.commits_between(golden, state.golden_hash, "refs/heads/main")
    assert len(landed) == 1
    assert repos.git(golden, "show", f"{landed[0]}:tests/test_mul.py") == TEST_MUL
    assert (workspace / "tests" / "test_mul.py").read_text() == TEST_MUL
