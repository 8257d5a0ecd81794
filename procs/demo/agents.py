"""The demo's scripted agents: a recorded session (procs/demo/recorded.py) replayed.

    --agent-turns procs.demo.agents:replay     (the loop template's option)

Used only when no model is configured, and the demo says so. Each role's turn looks up
what the agent did at that point of the recorded session, by the loop's own state
(how many tests are in, which implementation try this is), writes those files into the
workspace and answers what the agent answered. Nothing else is scripted: the loop still
judges every turn by the workspace and the tests (the red test must fail, a wrong
implementation is reverted by TCR), and the merge queue and golden do their real work.
Keyed by the loop's state, not by a counter, a loop restarted mid-phase replays the same
turn again. A bead the session does not know gets an answer that changes nothing, so its
loop fails with the loop's own reason.

A reply has the shape of procs.loop.turns.TurnReply (text, outcome, refusals), built
here: a process kind does not import another's modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs.demo.recorded import SESSION

NO_RECORDING = {"status": "no_recording"}


@dataclass(frozen=True)
class Reply:
    """What the loop reads of a turn's answer (procs.loop.turns.TurnReply's fields)."""

    text: str
    outcome: str = "completed"
    refusals: tuple[str, ...] = ()


class Replay:
    """AgentTurns over a recorded session: one method per role."""

    def __init__(self, session: dict[str, dict[str, Any]]) -> None:
        self.session = session

    def auditor(self, turn: Any) -> Reply:
        steps = self._steps(turn, "auditor")
        tests_in = int(turn.state.iteration)
        if steps is None:
            return _answer(turn, None)
        return _answer(turn, steps[min(tests_in, len(steps) - 1)])

    def implementer(self, turn: Any) -> Reply:
        steps = self._steps(turn, "implementer")
        test, attempt = int(turn.state.iteration) - 1, int(turn.state.impl_attempt) - 1
        if steps is None or not 0 <= test < len(steps):
            return _answer(turn, None)
        tries = steps[test]
        return _answer(turn, tries[min(max(attempt, 0), len(tries) - 1)])

    def architect(self, turn: Any) -> Reply:
        return _answer(turn, self._steps(turn, "architect"))

    def reviewer(self, turn: Any) -> Reply:
        return _answer(turn, self._steps(turn, "reviewer"))

    def _steps(self, turn: Any, role: str) -> Any:
        return self.session.get(str(turn.state.bead_id), {}).get(role)


def _answer(turn: Any, step: dict[str, Any] | None) -> Reply:
    if step is None:
        return Reply(f"No recorded turn for this bead.\nFACTORY_RESULT {json.dumps(NO_RECORDING)}")
    workspace = Path(turn.workspace)
    for relpath, text in step.get("write", {}).items():
        path = workspace / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Reply(f"{step['say']}\nFACTORY_RESULT {json.dumps(step['result'])}")


def replay(config: Any, held: Any, **_: Any) -> Replay:
    """The loop's AgentTurns factory (called as f(config, ledger[, model=...]))."""
    return Replay(SESSION)
