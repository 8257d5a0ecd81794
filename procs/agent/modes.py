"""Mode pinning: a turn runs only in a session mode that asks permission for every edit.

Agents offer session modes (ACP `modes` in the session/new reply: `currentModeId`,
`availableModes`), and some start in one that approves edits and commands itself:
claude-agent-acp starts in "auto", codex-acp's "auto" and "full-access" edit without
asking, Gemini's "yolo" approves everything. In such a mode the agent never asks, so the
role's policy is never consulted. So after session/new the mode is pinned: the agent's
profile lists the modes that ask (`ask_modes`, preferred first), `pin()` picks the first
the agent offers, and the caller sets it with session/set_mode when it is not current.
A mode change the agent reports later (`current_mode_update`) to a mode outside that
list ends the turn (`leaves_pin()`). These are pure functions over what the agent sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class NoAskingMode(ValueError):
    """The agent offers no mode that asks for every edit; the message names what it offers."""


@dataclass(frozen=True)
class ModePin:
    """The modes a turn may run in (`ask_modes`, the preferred first); `required`: the
    agent must offer one (else NoAskingMode). An agent that reports no modes at all runs
    as its config says when not `required`."""

    ask_modes: tuple[str, ...]
    required: bool = False

    def pin(self, modes: dict[str, Any] | None) -> tuple[str | None, bool]:
        """(the mode to run in, whether session/set_mode must be sent) for the `modes` of
        a session/new reply (its JSON form). (None, False) when the agent has no modes
        and none is required. Raises NoAskingMode."""
        current, offered = _read(modes)
        if not offered and current is None:
            if self.required:
                raise NoAskingMode(
                    f"the agent reports no session modes; one of {list(self.ask_modes)} "
                    "(asks before every edit and command) is required"
                )
            return None, False
        if current in self.ask_modes and (current in offered or not offered):
            return current, False
        for mode in self.ask_modes:
            if mode in offered:
                return mode, True
        raise NoAskingMode(
            f"the agent offers the modes {offered} (current {current!r}); none asks before "
            f"every edit and command (known to: {list(self.ask_modes)}), so no turn runs"
        )

    def leaves_pin(self, update: dict[str, Any], pinned: str | None) -> str | None:
        """Why a `current_mode_update` ends the turn (None: it does not). Any mode outside
        ask_modes counts as one that approves by itself."""
        mode = update.get("currentModeId")
        if pinned is None and not self.required:
            return None  # nothing pinned: the agent runs as its config says
        if mode in self.ask_modes:
            return None
        return (
            f"the agent switched the session to mode {mode!r:.60} mid-turn; a turn runs only "
            f"in a mode that asks before every edit and command ({list(self.ask_modes)})"
        )


def _read(modes: dict[str, Any] | None) -> tuple[str | None, list[str]]:
    if not isinstance(modes, dict):
        return None, []
    current = modes.get("currentModeId")
    available = modes.get("availableModes")
    offered: Sequence[Any] = available if isinstance(available, list) else []
    ids = [str(m["id"]) for m in offered if isinstance(m, dict) and isinstance(m.get("id"), str)]
    return (current if isinstance(current, str) else None), ids
