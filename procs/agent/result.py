"""TurnResult: what one prompt turn ended with, and its outcome.

The stop reason is the agent's; the outcome is ours, and tells apart what the stop reason
alone does not (a role refusal is feedback for the next turn, never a cancel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from procs.agent.record import TurnRecord

OUTCOMES = ("completed", "refused", "cancelled", "timed_out")


@dataclass
class TurnResult:
    """What one prompt turn ended with. `outcome` tells apart what the stop reason alone
    does not (an agent may end a turn "cancelled" after a refusal):

    timed_out  our timeout cancelled the turn
    cancelled  our caller cancelled it (`stop`), or the agent ended it "cancelled" with
               no refusal of ours in the turn
    refused    the role refused at least one request of the turn (a permission or an
               fs write), whatever the stop reason: feedback for the next turn (the
               reasons are `refusals`), never a cancel
    completed  anything else (end_turn, max_tokens, ...: see stop_reason)
    """

    stop_reason: str
    record: TurnRecord
    wall_s: float
    usage: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    protocol_violations: list[str] = field(default_factory=list)
    malformed_notifications: int = 0  # dropped, counted (the violations keep a sample)
    stopped: bool = False  # the caller's stop event cancelled the turn

    @property
    def refusals(self) -> list[str]:
        """Why the role refused what it refused in this turn, in order."""
        return self.record.refusals()

    @property
    def outcome(self) -> str:
        if self.timed_out:
            return "timed_out"
        if self.stopped:
            return "cancelled"
        if self.refusals:
            return "refused"
        return "cancelled" if self.stop_reason == "cancelled" else "completed"

    @property
    def dropped_updates(self) -> int:
        """session/updates of this turn that the record's limits left out."""
        return self.record.dropped_updates

    @property
    def dropped_decisions(self) -> int:
        """Permission decisions and file operations the record's limits left out."""
        return self.record.dropped_decisions

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "refusals": self.refusals,
            "stop_reason": self.stop_reason, "wall_s": self.wall_s, "usage": self.usage,
            "timed_out": self.timed_out, "stopped": self.stopped,
            "protocol_violations": self.protocol_violations,
            "malformed_notifications": self.malformed_notifications,
            "dropped_updates": self.dropped_updates,
            "dropped_decisions": self.dropped_decisions, "record": self.record.to_dict(),
        }  # fmt: skip
