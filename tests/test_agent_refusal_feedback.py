"""A role refusal is feedback, never a cancel: when the implementer's turn was refused
something (TurnReply.outcome "refused", its refusals in the role's words) and the attempt
failed, the next implementer prompt says what was refused, so the agent stops trying.
Driven by the loop driver on a real repo with a scripted in-process AgentTurns (the
test double of tests/test_loop_driver.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.loop import FactoryLoopState, LoopLimits, git
from procs.loop.driver import LoopConfig
from procs.loop.store import LoopStore
from procs.loop.turns import Turn, TurnReply
from tests.helpers import repos
from tests.helpers.loop_repos import CALC, TEST_COMMAND, make_project, write
from tests.helpers.sandbox import bwrap_unusable
from tests.test_loop_driver import REQUIREMENTS_TEXT, HonestTurns, P, Setup, result

pytestmark = pytest.mark.integration
REFUSAL = "role implementer may not write tests (tests/test_mul.py)"


@pytest.fixture
def loop(tmp_path: Path) -> Setup:
    """A loop on a real repo, as tests/test_loop_driver.py's `setup` (skips without bwrap)."""
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)
    source = make_project(tmp_path / "source")
    golden = tmp_path / "golden.git"
    repos.git(tmp_path, "clone", "-q", "--bare", str(source), str(golden))
    workspace = tmp_path / "ws"
    repos.git(tmp_path, "clone", "-q", str(golden), str(workspace))
    state = FactoryLoopState(
        loop_id="loop-1", bead_id="bd-1", attempt=1, workspace=str(workspace),
        golden_hash=git.head(workspace), limits=LoopLimits(max_impl_attempts=2),
    )  # fmt: skip
    config = LoopConfig(requirements=REQUIREMENTS_TEXT, test_command=TEST_COMMAND,
                        suite_timeout_s=120.0)  # fmt: skip
    return Setup(golden, workspace, LoopStore(tmp_path / "state" / "loops.sqlite3"), state, config)


class RefusedFirst(HonestTurns):
    """The implementer's first attempt tried to edit the test (refused by the role, the
    file unchanged) and wrote wrong code; its second is honest."""

    def __init__(self) -> None:
        super().__init__(("mul",))

    def implementer(self, turn: Turn) -> TurnReply:
        if turn.state.impl_attempt == 1:
            self._note(turn)
            write(turn.workspace, "calc.py", CALC + "\n\ndef mul(a, b):\n    return a + b\n")
            return TurnReply(result('{"status": "implemented"}'), outcome="refused",
                             refusals=(REFUSAL,))  # fmt: skip
        return super().implementer(turn)


def test_a_refusal_is_told_to_the_next_attempt(loop: Setup) -> None:
    turns = RefusedFirst()
    final = loop.driver(turns).run(loop.state)
    assert final.phase is P.COMPLETE, final.reason
    first, second = [p for role, p in turns.prompts if role == "implementer"]
    assert REFUSAL not in first
    assert "Refused in your last turn" in second and REFUSAL in second
