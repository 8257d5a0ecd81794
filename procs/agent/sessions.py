"""The sessions an agent process has open on our side, each under its own role's policy.

One agent process serves many turns (one per loop, or one per role: DESIGN.md), each in a
session of its own, and each session is judged by the policy of the role whose turn it
is: the implementer's session may not write tests/ while the auditor's, on the same
agent, may write only tests. So the rules live here, per session id, never per agent:
`AgentSession` holds the session's policy, its turn record, its terminals (their
read-only paths are the role's) and its cancel flag. A request that names a session we
did not open, or one whose turn has ended (`Sessions.end`), is refused as unknown: an
agent cannot act after its turn, nor with another turn's rights.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs.agent.locked_paths import locked_paths
from procs.agent.modes import ModePin
from procs.agent.permissions import MERGED_KEYS
from procs.agent.record import RecordLimits, TurnRecord
from procs.agent.roles import RolePolicy
from procs.agent.terminals import Terminals

MAX_TOOL_CALLS_KEPT = 1000
# Builds a session's Terminals from its policy (the client knows the workspace and limits).
TerminalsFor = Callable[[RolePolicy], Terminals]


class UnknownSession(KeyError):
    """A request named a session that is not open here; the message says which."""


@dataclass
class AgentSession:
    """One open session: the role's policy, the current turn's record, its terminals."""

    session_id: str
    policy: RolePolicy
    record: TurnRecord
    terminals: Terminals
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    # What session/update said of each tool call (kind, title, locations, rawInput), for
    # permission requests that leave some out; the last MAX_TOOL_CALLS_KEPT ids.
    tool_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Mode pinning (procs.agent.modes): the pin, the mode the session runs in, and why
    # the agent left it (set with `left_pin`, which ends the turn).
    mode_pin: ModePin | None = None
    mode: str | None = None
    started_in: str | None = None  # the mode session/new reported, before pinning
    unsafe_mode: str | None = None
    left_pin: asyncio.Event = field(default_factory=asyncio.Event)

    def note_mode(self, update: dict[str, Any]) -> None:
        """A current_mode_update: a mode outside the pin ends the turn (`left_pin`); from
        then on every permission request of the session is answered "cancelled"."""
        mode = update.get("currentModeId")
        pinned, self.mode = self.mode, mode if isinstance(mode, str) else None
        if self.mode_pin is None or self.unsafe_mode is not None:
            return
        why = self.mode_pin.leaves_pin(update, pinned)
        if why is not None:
            self.unsafe_mode = why
            self.cancelled.set()
            self.left_pin.set()

    def note_tool_call(self, update: dict[str, Any]) -> None:
        """Keep what a tool_call / tool_call_update says of its call (later values win)."""
        call_id = update.get("toolCallId")
        if not isinstance(call_id, str):
            return
        known = self.tool_calls.pop(call_id, {})  # re-inserted: the newest last
        for key in MERGED_KEYS:
            if update.get(key) not in (None, "", [], {}):
                known[key] = update[key]
        self.tool_calls[call_id] = known
        while len(self.tool_calls) > MAX_TOOL_CALLS_KEPT:
            del self.tool_calls[next(iter(self.tool_calls))]


class Sessions:
    """The open sessions of one agent process, by id; `latest` is the last one opened."""

    def __init__(
        self, workspace: Path, record_limits: RecordLimits, terminals_for: TerminalsFor
    ) -> None:
        self.workspace = workspace
        self.record_limits = record_limits
        self.terminals_for = terminals_for
        self._open: dict[str, AgentSession] = {}
        self.latest: AgentSession | None = None
        self.opened = 0
        self.ended = 0

    def open(self, session_id: str, policy: RolePolicy) -> AgentSession:
        """Register `session_id` under `policy`. Raises ValueError if it is already open
        (an agent that hands out an id twice would otherwise get two turns' rights)."""
        if session_id in self._open:
            raise ValueError(f"session {session_id!r} is already open")
        session = AgentSession(
            session_id, policy, TurnRecord(self.record_limits), self.terminals_for(policy)
        )
        self._open[session_id] = session
        self.latest = session
        self.opened += 1
        return session

    def get(self, session_id: object) -> AgentSession:
        """The open session `session_id`; raises UnknownSession naming it."""
        session = self._open.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise UnknownSession(
                f"unknown session {session_id!r:.80}: not opened by this client, or its "
                "turn has ended"
            )
        return session

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._open

    def ids(self) -> set[str]:
        return set(self._open)

    async def end(self, session_id: str) -> AgentSession | None:
        """Close a session on our side: its waiting permission requests are answered
        "cancelled", its terminals killed and reaped (about pipe_grace_s at most), and
        any later request naming it is refused. None if it was not open."""
        session = self._open.pop(session_id, None)
        if session is None:
            return None
        self.ended += 1
        session.cancelled.set()
        await session.terminals.close()
        return session

    async def end_all(self) -> None:
        for session_id in list(self._open):
            await self.end(session_id)

    def statistics(self) -> dict[str, int]:
        return {"open": len(self._open), "opened": self.opened, "ended": self.ended}


def role_locked_paths(policy: RolePolicy, workspace: Path) -> Callable[[], list[Path]]:
    """The read-only paths of `policy`'s role in `workspace`, listed when called."""
    return lambda: list(locked_paths(policy, workspace))
