"""The gauntlet in step 7's loop: an implementer whose first attempt games the test (the
suite is green, so TCR commits it) is reverted at Verifying by cheat_detection, the
finding is fed back in its next prompt, and its honest second attempt lands. Real repo,
real pytest under bubblewrap, the loop driver with a scripted AgentTurns double."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from procs.gauntlet import CheatDetection, CompileStage, GauntletConfig, LlmJudge, LoopGauntlet
from procs.loop import FactoryLoopState, FactoryPhase, LoopLimits, git
from procs.loop.driver import LoopConfig, LoopDriver
from procs.loop.lander import FastForwardLander
from procs.loop.store import LoopStore
from procs.loop.turns import Turn, TurnReply
from tests.helpers import repos
from tests.helpers.loop_repos import CALC, TEST_COMMAND, make_project, write
from tests.helpers.sandbox import bwrap_unusable

pytestmark = pytest.mark.integration
HONEST = "def mul(a, b):\n    return a * b\n"
CHEAT = "def mul(a, b):\n    return 6\n"  # what test_mul expects for (2, 3)


def result(obj: str) -> str:
    return f"Done.\nFACTORY_RESULT {obj}"


class CheatFirstTurns:
    """Auditor: test_mul, then complete. Implementer: first the cheat, then honest code.
    Architect: nothing. Reviewer: approves. Records the implementer's prompts."""

    def __init__(self) -> None:
        self.implementer_prompts: list[str] = []

    def auditor(self, turn: Turn) -> TurnReply:
        test = turn.workspace / "tests" / "test_mul.py"
        if test.exists():
            return TurnReply(result('{"status": "requirements_complete"}'))
        test.write_text("import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n")
        return TurnReply(result('{"status": "test_written", "test": "test_mul.py"}'))

    def implementer(self, turn: Turn) -> TurnReply:
        self.implementer_prompts.append(turn.prompt)
        code = CHEAT if len(self.implementer_prompts) == 1 else HONEST
        write(turn.workspace, "calc.py", f"{CALC}\n\n{code}")
        return TurnReply(result('{"status": "implemented"}'))

    def architect(self, turn: Turn) -> TurnReply:
        return TurnReply(result('{"status": "refactored"}'))

    def reviewer(self, turn: Turn) -> TurnReply:
        return TurnReply(result('{"status": "approve", "issues": []}'))


def test_a_cheating_implementer_is_reverted_with_the_finding_and_an_honest_retry_lands(
    tmp_path: Path,
) -> None:
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
        limits=LoopLimits(max_impl_attempts=2, refactor_interval=5, max_red_attempts=2),
    )  # fmt: skip
    config = LoopConfig(requirements="calc gains mul(a, b), the product.",
                        test_command=TEST_COMMAND, suite_timeout_s=120.0)  # fmt: skip
    gauntlet = LoopGauntlet(
        GauntletConfig(unit_command=(sys.executable, "-m", "pytest", "-q"), timeout_s=120,
                       router_socket=tmp_path / "no-router.sock"),
        [CompileStage(), CheatDetection(), LlmJudge()],
    )  # fmt: skip
    store = LoopStore(tmp_path / "state" / "loops.sqlite3")
    turns = CheatFirstTurns()
    driver = LoopDriver(store, turns, config, FastForwardLander(golden), gauntlet=gauntlet)
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
    assert gauntlet.last is not None
    assert [(s.name, s.outcome.verdict.value) for s in gauntlet.last.stages] == [
        ("compile", "pass"), ("cheat_detection", "pass"), ("llm_judge", "skipped")]  # fmt: skip
