"""The loop driver end to end on a real repo, real pytest under bubblewrap and a scripted
in-process AgentTurns (a test double: it writes files as an agent would): an honest run
lands green commits only, with a TCR revert and a refactor, and `commits` is what landed;
a cheating implementer is never committed (in no commit any ref reaches); the green
commit is made only once the gauntlet passed, and a refactor must pass the gauntlet too;
an auditor test that does not collect is refused and the auditor asked again; a loop
killed in any phase resumes and lands the same work without a doubled history entry or a
stray commit."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from ipc.signals import LoopComplete, LoopFailed, LoopSpawned, Signal
from procs.loop import FactoryLoopState, FactoryPhase, LoopLimits, git
from procs.loop.driver import LoopConfig, LoopDriver
from procs.loop.events import GauntletPassed, LoopEvent
from procs.loop.lander import FastForwardLander
from procs.loop.store import LoopStore
from procs.loop.suite import run_suite, tcr_policy
from procs.loop.turns import AgentCrashed, Turn, TurnFailed, TurnReply
from tests.helpers import repos
from tests.helpers.loop_repos import CALC, TEST_COMMAND, make_project, write
from tests.helpers.sandbox import bwrap_unusable

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    """Skip, naming what is missing, where bubblewrap cannot sandbox (probed without our
    code, on first use rather than at import)."""
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)


P = FactoryPhase
# name -> (implementation, the test's assertion)
REQUIREMENTS = {
    "mul": ("def mul(a, b):\n    return a * b\n", "assert calc.mul(2, 3) == 6"),
    "neg": ("def neg(a):\n    return -a\n", "assert calc.neg(4) == -4"),
}
IMPORT_ERROR_TEST = "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"
REQUIREMENTS_TEXT = "calc gains mul(a, b) (the product) and neg(a) (the negation)."


def result(obj: str) -> str:
    return f"Done.\nFACTORY_RESULT {obj}"


class HonestTurns:
    """Auditor: one test per missing requirement, then REQUIREMENTS_COMPLETE.
    Implementer: calc.py with every function whose test exists. Architect: a docstring.
    Reviewer: approves. Records every prompt it was given."""

    def __init__(self, requirements: tuple[str, ...] = ("mul", "neg")) -> None:
        self.prompts: list[tuple[str, str]] = []
        self.requirements = {name: REQUIREMENTS[name] for name in requirements}

    def _note(self, turn: Turn) -> None:
        self.prompts.append((turn.role, turn.prompt))

    def auditor(self, turn: Turn) -> TurnReply:
        self._note(turn)
        for name, (_, check) in self.requirements.items():
            test = turn.workspace / "tests" / f"test_{name}.py"
            if not test.exists():
                test.write_text(f"import calc\n\n\ndef test_{name}():\n    {check}\n")
                return TurnReply(result(f'{{"status": "test_written", "test": "{test.name}"}}'))
        return TurnReply(result('{"status": "requirements_complete"}'))

    def implementer(self, turn: Turn) -> TurnReply:
        self._note(turn)
        code = [CALC] + [impl for name, (impl, _) in self.requirements.items()
                         if (turn.workspace / "tests" / f"test_{name}.py").exists()]  # fmt: skip
        existing = (turn.workspace / "calc.py").read_text()
        docstring = existing.split("\n")[0] if existing.startswith('"""') else ""
        text = "\n\n".join(code)
        (turn.workspace / "calc.py").write_text(f"{docstring}\n{text}" if docstring else text)
        return TurnReply(result('{"status": "implemented", "summary": "wrote calc"}'))

    def architect(self, turn: Turn) -> TurnReply:
        self._note(turn)
        path = turn.workspace / "calc.py"
        path.write_text('"""Arithmetic."""\n' + path.read_text())
        return TurnReply(result('{"status": "refactored", "lines_after": 9}'))

    def reviewer(self, turn: Turn) -> TurnReply:
        self._note(turn)
        return TurnReply(result('{"status": "approve", "issues": []}'))


class WrongFirstTurns(HonestTurns):
    """The implementer's first try at the first test is wrong (TCR reverts it)."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    def implementer(self, turn: Turn) -> TurnReply:
        self.tries += 1
        if turn.state.impl_attempt == 1 and turn.state.iteration == 1:
            self._note(turn)
            write(turn.workspace, "calc.py", CALC + "\n\ndef mul(a, b):\n    return a + b\n")
            write(turn.workspace, "helper.py", "LEFTOVER = True\n")
            return TurnReply(result('{"status": "implemented"}'))
        return super().implementer(turn)


class DeletingCheater(HonestTurns):
    def implementer(self, turn: Turn) -> TurnReply:
        self._note(turn)
        for test in (turn.workspace / "tests").glob("test_mul.py"):
            test.unlink()
        return TurnReply(result('{"status": "implemented"}'))


class EditingCheater(HonestTurns):
    def implementer(self, turn: Turn) -> TurnReply:
        self._note(turn)
        write(turn.workspace, "tests/test_mul.py", "def test_mul():\n    assert True\n")
        write(turn.workspace, "calc.py", CALC + "\n\ndef mul(a, b):\n    return 6\n")
        return TurnReply(result('{"status": "implemented"}'))


class CollectionErrorFirst(HonestTurns):
    """The auditor's first test does not even import; its second is honest."""

    def __init__(self) -> None:
        super().__init__()
        self.first = True

    def auditor(self, turn: Turn) -> TurnReply:
        if self.first:
            self.first = False
            self._note(turn)
            write(turn.workspace, "tests/test_mul.py", IMPORT_ERROR_TEST)
            return TurnReply(result('{"status": "test_written"}'))
        return super().auditor(turn)


@dataclasses.dataclass
class Setup:
    golden: Path
    workspace: Path
    store: LoopStore
    state: FactoryLoopState
    config: LoopConfig

    def driver(self, turns: HonestTurns, store: LoopStore | None = None) -> LoopDriver:
        return LoopDriver(store or self.store, turns, self.config, FastForwardLander(self.golden))


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    source = make_project(tmp_path / "source")
    golden = tmp_path / "golden.git"
    repos.git(tmp_path, "clone", "-q", "--bare", str(source), str(golden))
    workspace = tmp_path / "ws"
    repos.git(tmp_path, "clone", "-q", str(golden), str(workspace))
    state = FactoryLoopState(
        loop_id="loop-1", bead_id="bd-1", attempt=1, workspace=str(workspace),
        golden_hash=git.head(workspace),
        limits=LoopLimits(max_impl_attempts=2, refactor_interval=2, max_red_attempts=2),
    )  # fmt: skip
    config = LoopConfig(requirements=REQUIREMENTS_TEXT, test_command=TEST_COMMAND,
                        suite_timeout_s=120.0)  # fmt: skip
    return Setup(golden, workspace, LoopStore(tmp_path / "state" / "loops.sqlite3"), state, config)


def landed(setup: Setup) -> list[str]:
    return git.commits_between(setup.golden, setup.state.golden_hash, "refs/heads/main")


def assert_every_commit_green(setup: Setup, commits: list[str], tmp_path: Path) -> None:
    for n, commit in enumerate(commits):
        checkout = tmp_path / f"check{n}"
        repos.git(tmp_path, "clone", "-q", str(setup.golden), str(checkout))
        repos.git(checkout, "checkout", "-q", commit)
        run = run_suite(checkout, TEST_COMMAND, tcr_policy(checkout, timeout_s=120.0))
        assert run.green, f"commit {commit} is not green: {run.why_not_green()}"


def events(setup: Setup) -> list[str]:
    return [entry.event for entry in setup.store.history("loop-1")]


def reachable(workspace: Path) -> set[str]:
    """Every commit any ref of the workspace (branches, remotes, refs/factory pins, HEAD)
    reaches."""
    return set(git.git(workspace, "rev-list", "--all").split())


def assert_no_stray_commits(workspace: Path) -> None:
    """An ended loop leaves no scratch commit (red, WIP, a fold a crash orphaned)
    reachable: every ref reaches only HEAD's history, and no pin is left."""
    assert reachable(workspace) == set(git.git(workspace, "rev-list", "HEAD").split())
    assert git.git(workspace, "for-each-ref", "refs/factory") == ""


def test_an_honest_loop_lands_green_commits_with_a_revert_and_a_refactor(
    setup: Setup, tmp_path: Path
) -> None:
    turns = WrongFirstTurns()
    signals: list[Signal] = []
    driver = LoopDriver(setup.store, turns, setup.config, FastForwardLander(setup.golden),
                        publish=signals.append)  # fmt: skip
    final = driver.run(setup.state)
    assert final.phase is P.COMPLETE, final.reason
    spawned, complete = signals
    assert spawned == LoopSpawned(loop_id="loop-1", task_id="bd-1", phase="auditing")
    assert isinstance(complete, LoopComplete) and complete.loop_id == "loop-1"
    assert (complete.commits, complete.reverts) == (3, 1) and complete.duration_ms > 0
    assert (final.greens, final.commits, final.reverts) == (2, 3, 1)
    assert events(setup) == [
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrFailed", "CodeWritten",
        "TcrPassed", "GauntletPassed",
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
        "RefactorKept", "RequirementsComplete", "ReviewDone", "Pushed",
    ]  # fmt: skip
    commits = landed(setup)
    assert len(commits) == 3 == final.commits and commits[-1] == git.head(setup.workspace)
    assert_no_stray_commits(setup.workspace)
    assert not (setup.workspace / "helper.py").exists()
    assert_every_commit_green(setup, commits, tmp_path)
    second_try = [p for role, p in turns.prompts if role == "implementer"][1]
    assert "attempt 2 of 2" in second_try and "test_mul" in second_try
    architect = next(p for role, p in turns.prompts if role == "architect")
    assert "Session History" in architect and "TcrFailed" in architect


@pytest.mark.parametrize("cheater", [DeletingCheater, EditingCheater], ids=["delete", "edit"])
def test_a_cheating_implementer_is_never_committed(
    setup: Setup, cheater: type[HonestTurns]
) -> None:
    signals: list[Signal] = []
    driver = LoopDriver(setup.store, cheater(), setup.config, FastForwardLander(setup.golden),
                        publish=signals.append)  # fmt: skip
    final = driver.run(setup.state)
    assert final.phase is P.FAILED
    assert "may not change tests" in final.reason
    assert signals[-1] == LoopFailed(loop_id="loop-1", reason=final.reason)
    assert events(setup).count("TcrFailed") == 2
    assert landed(setup) == [] and final.commits == 0
    head = git.head(setup.workspace)
    test = "def test_mul():\n    assert calc.mul(2, 3) == 6"
    assert test in repos.git(setup.workspace, "show", f"{head}:tests/test_mul.py")
    assert git.is_clean(setup.workspace)
    # the cheat's WIP commits are gone: no ref (not even a pin of the ended loop) reaches
    # a commit without the auditor's test as written, or with the cheat's code
    assert_no_stray_commits(setup.workspace)
    for commit in reachable(setup.workspace):
        files = git.git(setup.workspace, "ls-tree", "-r", "--name-only", commit).split()
        assert "return 6" not in git.git(setup.workspace, "show", f"{commit}:calc.py")
        if commit != setup.state.golden_hash:
            assert "tests/test_mul.py" in files
            shown = git.git(setup.workspace, "show", f"{commit}:tests/test_mul.py")
            assert test in shown


def test_a_test_that_does_not_collect_is_refused_and_the_auditor_asked_again(
    setup: Setup,
) -> None:
    turns = CollectionErrorFirst()
    final = setup.driver(turns).run(setup.state)
    assert final.phase is P.COMPLETE, final.reason
    assert events(setup)[:3] == ["AuditorWroteTest", "RedRefused", "AuditorWroteTest"]
    second = [p for role, p in turns.prompts if role == "auditor"][1]
    assert "collection" in second
    assert final.iteration == 2


class Crash(BaseException):
    """Stands in for SIGKILL: nothing in the driver catches it."""


class CrashingStore(LoopStore):
    """Crashes once, before persisting the first `event` of a kind: the phase's git
    work is done, its record is not (the worst moment to die)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(path)
        self.kind = kind
        self.crashed = False

    def advance(self, state: FactoryLoopState, event: LoopEvent, now: float) -> FactoryLoopState:
        if type(event).__name__ == self.kind and not self.crashed:
            self.crashed = True
            raise Crash(self.kind)
        return super().advance(state, event, now)


@pytest.mark.parametrize(
    "kind",
    ["AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
     "RefactorKept", "ReviewDone", "Pushed"],
)  # fmt: skip
def test_a_loop_killed_in_any_phase_resumes_without_doubles(
    setup: Setup, kind: str, tmp_path: Path
) -> None:
    # One requirement and a refactor after every green: each phase once, fewer test runs.
    limits = dataclasses.replace(setup.state.limits, refactor_interval=1)
    state = dataclasses.replace(setup.state, limits=limits)
    crashing = CrashingStore(setup.store.path, kind)
    with pytest.raises(Crash):
        setup.driver(HonestTurns(("mul",)), crashing).run(state)
    crashing.close()
    resumed = LoopStore(setup.store.path)  # a fresh process: only the database survives
    final = setup.driver(HonestTurns(("mul",)), resumed).run(state)
    assert final.phase is P.COMPLETE, final.reason
    assert (final.greens, final.commits, final.reverts) == (1, 2, 0)
    assert [entry.event for entry in resumed.history("loop-1")] == [
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
        "RefactorKept", "RequirementsComplete", "ReviewDone", "Pushed",
    ]  # fmt: skip
    commits = landed(setup)
    assert len(commits) == 2 == final.commits
    assert_no_stray_commits(setup.workspace)  # a fold the crash orphaned included
    assert_every_commit_green(setup, commits, tmp_path)


def test_a_crash_inside_a_turn_redoes_the_turn_from_the_phase_start(setup: Setup) -> None:
    class HalfWayImplementer(HonestTurns):
        def implementer(self, turn: Turn) -> TurnReply:
            write(turn.workspace, "calc.py", "half written = (\n")
            write(turn.workspace, "scratch/notes.txt", "thinking\n")
            raise Crash("killed mid-turn")

    with pytest.raises(Crash):
        setup.driver(HalfWayImplementer()).run(setup.state)
    red = git.resolve(setup.workspace, "refs/factory/red")  # pinned: no gc can prune it
    assert red == setup.store.load("loop-1").red_commit == git.head(setup.workspace)
    final = setup.driver(HonestTurns(), LoopStore(setup.store.path)).run(setup.state)
    assert final.phase is P.COMPLETE, final.reason
    assert final.reverts == 0
    assert not (setup.workspace / "scratch").exists()
    assert textwrap.dedent(CALC) in (setup.workspace / "calc.py").read_text()


class AgentKilledMidTurn(HonestTurns):
    """The implementer's agent dies mid-turn `deaths` times (a SIGKILL, an OOM kill) after
    writing half a file; then the turn is done honestly."""

    def __init__(self, deaths: int) -> None:
        super().__init__(("mul",))
        self.deaths = deaths
        self.seen: list[str] = []

    def implementer(self, turn: Turn) -> TurnReply:
        self.seen.append((turn.workspace / "calc.py").read_text())
        if self.deaths > 0:
            self.deaths -= 1
            write(turn.workspace, "calc.py", "half written = (\n")
            raise AgentCrashed("implementer turn failed (agent died): killed by SIGKILL")
        return super().implementer(turn)


def test_an_agent_killed_mid_turn_is_replaced_and_the_turn_redone_from_the_phase_start(
    setup: Setup,
) -> None:
    turns = AgentKilledMidTurn(deaths=2)
    final = setup.driver(turns).run(setup.state)
    assert final.phase is P.COMPLETE, final.reason
    assert len(turns.seen) == 3  # two deaths, then the turn that counted
    assert all("half written" not in seen for seen in turns.seen)  # each from the start
    assert final.reverts == 0 and final.commits == 1


def test_an_agent_that_keeps_dying_fails_the_loop_naming_it(setup: Setup) -> None:
    final = setup.driver(AgentKilledMidTurn(deaths=99)).run(setup.state)
    assert final.phase is P.FAILED
    assert "agent died" in final.reason and "3 times in this phase" in final.reason


class GoldenMovesBeforeLanding(HonestTurns):
    """While the reviewer reads, another bead lands on golden (touching `path`)."""

    def __init__(self, golden: Path, scratch: Path, path: str, text: str) -> None:
        super().__init__(("mul",))
        self.golden, self.scratch, self.path, self.text = golden, scratch, path, text

    def reviewer(self, turn: Turn) -> TurnReply:
        if not self.scratch.exists():
            repos.git(self.scratch.parent, "clone", "-q", str(self.golden), str(self.scratch))
            write(self.scratch, self.path, self.text)
            repos.git(self.scratch, "add", "-A")
            repos.git(self.scratch, "commit", "-q", "-m", "another bead")
            repos.git(self.scratch, "push", "-q", "origin", "HEAD:main")
        return super().reviewer(turn)


def test_golden_moved_the_loop_rebases_verifies_and_lands(setup: Setup, tmp_path: Path) -> None:
    turns = GoldenMovesBeforeLanding(setup.golden, tmp_path / "other", "README.txt", "hi\n")
    final = setup.driver(turns).run(setup.state)
    assert final.phase is P.COMPLETE, final.reason
    assert events(setup)[-5:] == [
        "ReviewDone", "PushConflict", "Rebased", "GauntletPassed", "Pushed",
    ]  # fmt: skip
    tip = git.resolve(setup.golden, "refs/heads/main")
    assert tip == git.head(setup.workspace)
    assert (setup.workspace / "README.txt").exists() and "def mul" in (
        setup.workspace / "calc.py"
    ).read_text()
    assert final.golden_hash != setup.state.golden_hash and not final.rebased


def test_a_rebase_conflict_fails_the_loop_and_leaves_golden_alone(
    setup: Setup, tmp_path: Path
) -> None:
    turns = GoldenMovesBeforeLanding(setup.golden, tmp_path / "other", "calc.py", "X = 1\n")
    final = setup.driver(turns).run(setup.state)
    assert final.phase is P.FAILED and "rebase conflict" in final.reason
    assert events(setup)[-3:] == ["ReviewDone", "PushConflict", "RebaseConflict"]
    other = git.resolve(setup.golden, "refs/heads/main")
    assert git.git(setup.golden, "show", f"{other}:calc.py") == "X = 1\n"
    assert not git.rebase_in_progress(setup.workspace)


class SneakyAuditor(HonestTurns):
    """The auditor's first turn also writes the code under test: refused, asked again."""

    def __init__(self) -> None:
        super().__init__(("mul",))
        self.first = True

    def auditor(self, turn: Turn) -> TurnReply:
        if self.first:
            self.first = False
            write(turn.workspace, "calc.py", CALC + "\n\ndef mul(a, b):\n    return a * b\n")
        return super().auditor(turn)


def test_an_auditor_that_writes_code_is_refused_and_asked_again(setup: Setup) -> None:
    turns = SneakyAuditor()
    final = setup.driver(turns).run(setup.state)
    assert final.phase is P.COMPLETE, final.reason
    history = setup.store.history("loop-1")
    assert history[0].event == "RedRefused" and "tests only" in history[0].content
    assert "calc.py" in history[0].content
    second = [p for role, p in turns.prompts if role == "auditor"][1]
    assert "may write tests only" in second


def test_an_agent_that_cannot_do_its_turn_fails_the_loop(setup: Setup) -> None:
    class Unreachable(HonestTurns):
        def implementer(self, turn: Turn) -> TurnReply:
            raise TurnFailed("the model endpoint refused the connection")

    signals: list[Signal] = []
    driver = LoopDriver(setup.store, Unreachable(), setup.config,
                        FastForwardLander(setup.golden), publish=signals.append)  # fmt: skip
    final = driver.run(setup.state)
    assert final.phase is P.FAILED
    assert final.reason == "implementing: the model endpoint refused the connection"
    assert signals[-1] == LoopFailed(loop_id="loop-1", reason=final.reason)
    assert landed(setup) == []


def test_a_refactor_that_drops_a_passing_test_is_reverted(setup: Setup) -> None:
    class DroppingArchitect(HonestTurns):
        def architect(self, turn: Turn) -> TurnReply:
            (turn.workspace / "tests" / "test_calc.py").unlink()  # green, one test fewer
            return super().architect(turn)

    limits = dataclasses.replace(setup.state.limits, refactor_interval=1)
    final = setup.driver(DroppingArchitect(("mul",))).run(
        dataclasses.replace(setup.state, limits=limits)
    )
    assert final.phase is P.COMPLETE, final.reason
    reverted = next(h for h in setup.store.history("loop-1") if h.event == "RefactorReverted")
    assert "lost passing tests: ['tests.test_calc::test_add']" in reverted.content
    assert (setup.workspace / "tests" / "test_calc.py").exists()
    assert final.reverts == 1 and final.commits == 1


class WatchingGauntlet:
    """A Gauntlet double: records what HEAD is when it judges; passes every implementation
    and refuses every refactor."""

    def __init__(self) -> None:
        self.seen: list[tuple[FactoryPhase, str, list[str]]] = []

    def check(self, state: FactoryLoopState) -> str | None:
        workspace = Path(state.workspace)
        subjects = git.git(workspace, "log", "--format=%s", f"{state.green_commit}..HEAD")
        self.seen.append((state.phase, git.head(workspace), subjects.splitlines()))
        if state.phase is P.REFACTORING:
            return "[weakened_test] tests/test_calc.py:5: test_add checks less"
        return None


def test_green_is_committed_only_after_the_gauntlet_and_a_refactor_must_pass_it(
    setup: Setup,
) -> None:
    gauntlet = WatchingGauntlet()
    turns = HonestTurns()
    limits = dataclasses.replace(setup.state.limits, refactor_interval=1)
    driver = LoopDriver(setup.store, turns, setup.config, FastForwardLander(setup.golden),
                        gauntlet=gauntlet)  # fmt: skip
    final = driver.run(dataclasses.replace(setup.state, limits=limits))
    assert final.phase is P.COMPLETE, final.reason
    assert events(setup) == [
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
        "RefactorReverted",
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
        "RefactorReverted", "RequirementsComplete", "ReviewDone", "Pushed",
    ]  # fmt: skip
    # Verifying judges the WIP commit on the red one: no green commit yet
    judged = [(phase, subjects) for phase, _, subjects in gauntlet.seen]
    assert judged == [
        (P.VERIFYING, ["wip: implementation attempt 1", "red: test_mul.py"]),
        (P.REFACTORING, []),  # the architect's change, uncommitted, on the green commit
        (P.VERIFYING, ["wip: implementation attempt 1", "red: test_neg.py"]),
        (P.REFACTORING, []),
    ]  # fmt: skip
    # the green commit, made after the pass, has exactly the judged tree
    history = setup.store.history("loop-1")
    greens = [h for h in history if h.event == GauntletPassed.__name__]
    assert len(greens) == 2
    commits = landed(setup)
    assert [git.git(setup.golden, "log", "-1", "--format=%s", c).strip() for c in commits] == [
        "green: iteration 1", "green: iteration 2"]  # fmt: skip
    for (_, wip, _), green in zip(gauntlet.seen[::2], commits, strict=True):
        trees = git.git(setup.workspace, "rev-parse", f"{wip}^{{tree}}", f"{green}^{{tree}}")
        assert len(set(trees.split())) == 1
    assert (final.greens, final.commits, final.reverts) == (2, 2, 2) and len(commits) == 2
    refused = [h.content for h in history if h.event == "RefactorReverted"]
    assert all("the refactor failed the gauntlet" in text and "[weakened_test]" in text
               for text in refused)  # fmt: skip
    assert '"""Arithmetic."""' not in (setup.workspace / "calc.py").read_text()
    assert_no_stray_commits(setup.workspace)
    # the architect's "before" is the code its last turn left, not the loop's start
    architect = [p for role, p in turns.prompts if role == "architect"]
    label = "Lines of code after the last refactor turn (at the loop's start before the first)"
    lines = [[line.rsplit(": ", 1)[1] for line in prompt.splitlines()
              if line.startswith((label, "Lines of code now"))]
             for prompt in architect]  # fmt: skip
    assert lines == [["2", "6"], ["6", "10"]]
