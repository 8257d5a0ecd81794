"""What the loop asks of agents: one role turn at a time, through the AgentTurns protocol.

The driver renders the prompt, calls the role's method, and then judges what the turn
did by the workspace and the tests, never by the reply's words. The reply's last
`FACTORY_RESULT {json}` line (parse_result) is read only where the repo cannot say
(the auditor's REQUIREMENTS_COMPLETE, a summary for the history).

An implementation runs the agent through the ACP client (one agent process per loop, a
new session per turn, the role's policy per session) or, for the reviewer, through the
router; tests use a scripted one that writes files itself. A turn that cannot be done
(the agent died, timed out, the budget is spent) raises TurnFailed: the loop fails with
that reason. Anything else raised is a crash: the supervisor restarts the loop, which
redoes the phase.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from procs.loop.state import FactoryLoopState, HistoryEntry

RESULT_PREFIX = "FACTORY_RESULT "
MAX_HISTORY_CHARS = 64 * 1024


class TurnFailed(RuntimeError):
    """The agent could not do the turn; the message says why (it becomes the loop's
    failure reason)."""


class AgentCrashed(TurnFailed):
    """The agent (or the service that holds it) died in the middle of the turn: killed,
    crashed, out of memory. What it left is not its answer, so the loop runs the turn
    again with a new agent from the phase's starting commit (driver.step, bounded),
    as a restarted loop would, instead of failing the bead's attempt."""


@dataclass(frozen=True)
class Turn:
    """One role turn: the workspace it may change, the role's standing instructions, the
    rendered prompt and the loop's state when the turn began."""

    role: str
    workspace: Path
    system_prompt: str
    prompt: str
    state: FactoryLoopState


@dataclass(frozen=True)
class TurnReply:
    """What the agent answered (its final message, whole), and how the turn ended:
    `outcome` "completed", "refused" (the role refused some of what the agent tried;
    `refusals` says what, in the role's words: feedback for the next turn, never a
    cancel) or "cancelled" (a timed-out turn is a TurnFailed)."""

    text: str
    outcome: str = "completed"
    refusals: tuple[str, ...] = ()


class AgentTurns(Protocol):
    """One method per role; each blocks until the turn ends (bounded by the
    implementation's own turn timeout) and raises TurnFailed when it cannot be done."""

    def auditor(self, turn: Turn) -> TurnReply: ...

    def implementer(self, turn: Turn) -> TurnReply: ...

    def architect(self, turn: Turn) -> TurnReply: ...

    def reviewer(self, turn: Turn) -> TurnReply: ...


def parse_result(text: str) -> dict[str, Any] | None:
    """The object on the reply's last FACTORY_RESULT line, or None when there is none or
    it is not a JSON object."""
    for raw in reversed(text.strip().splitlines()):
        line = raw.strip()
        if line.startswith(RESULT_PREFIX):
            try:
                value = orjson.loads(line.removeprefix(RESULT_PREFIX))
            except orjson.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def session_history(requirements: str, entries: Iterable[HistoryEntry]) -> str:
    """The loop's history as later turns read it (seed 001's "TDD-TCR-REFACTOR Session
    History"): the requirements, then each transition with what its role said; the
    oldest entries are dropped past MAX_HISTORY_CHARS."""
    head = (
        f"# TDD-TCR-REFACTOR Session History\n\n## Iteration 0 - SESSION START\n\n"
        f"Requirements: {requirements}\n\n---\n"
    )
    parts = [
        f"\n## Iteration {entry.iteration} - {entry.role.upper()} ({entry.event}: "
        f"{entry.phase_from.value} -> {entry.phase_to.value})\n\n{entry.content}\n\n---\n"
        for entry in entries
    ]
    body = "".join(parts)
    if len(body) > MAX_HISTORY_CHARS:
        body = "\n(earlier entries omitted)\n" + body[-MAX_HISTORY_CHARS:]
    return head + body
