"""Which loops still hold a bead's claim: whether a dead owner's loop workspace is kept.

A loop's workspace is owned by factoryd's zygote, which dies with the tree. After a
restart the dispatcher resumes every loop whose claim survived (same loop id, resuming
from its store), so the manager must keep those loops' workspaces for them to adopt,
and reap only those whose loop holds no claim any more. The claims are the beads
service's (`list` on <runtime>/beads.sock: {claimed: [{loop_id, state}, ...]}).

An error is never an empty answer: a beads service that is not there yet (it starts
after the manager) or does not answer gives ClaimsUnknown, and the workspace is kept
until it can be asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ipc import control, paths

BEADS = "beads"
CALL_TIMEOUT_S = 5.0


class ClaimsUnknown(Exception):
    """The claims could not be read; the message says why."""


class LoopClaims(Protocol):
    def claimed_loops(self) -> frozenset[str]:
        """Loop ids holding a live claim. Raises ClaimsUnknown."""
        ...


class BeadsClaims:
    """The beads service's live claims, asked over its control socket (bounded)."""

    def __init__(self, runtime: Path, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.socket = paths.control_socket(runtime, BEADS)
        self.timeout_s = timeout_s

    def claimed_loops(self) -> frozenset[str]:
        if not self.socket.exists():
            raise ClaimsUnknown(f"the beads service is not running ({self.socket} is missing)")
        try:
            reply = control.call(self.socket, "list", {}, timeout=self.timeout_s)
        except control.ControlError as exc:
            raise ClaimsUnknown(f"the beads service's list: {exc}") from None
        claimed = reply.get("claimed") if isinstance(reply, dict) else None
        if not isinstance(claimed, list) or reply.get("error"):
            raise ClaimsUnknown(f"the beads service's list answered {reply!r:.200}")
        return frozenset(
            str(c["loop_id"])
            for c in claimed
            if isinstance(c, dict) and c.get("state") == "claimed" and c.get("loop_id")
        )
