"""Which beads were announced on the bus, and which are still to announce. Pure.

A bead is announced (BeadAssigned) when it becomes dispatchable: in this reading and not
in the last good one. One that leaves the set and comes back is announced again. A bead
waiting for the bus (the broker not reached yet, a full queue) stays queued while it is
still dispatchable. An unreadable store changes nothing here: the caller does not call
`reading` then, so nothing is forgotten and nothing is announced twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ipc.signals import BeadAssigned, Priority
from procs.beads.ready import Bead
from procs.beads.text import requirements

MAX_REQUIREMENTS_CHARS = 16 * 1024  # a signal says "look"; `show` gives the whole text


class Announcements:
    def __init__(self) -> None:
        self.announced: set[str] = set()  # dispatchable at the last good reading
        self.pending: list[Bead] = []  # newly dispatchable, not yet published
        self.published = 0

    def reading(self, dispatchable: list[Bead]) -> None:
        """A good reading of the store: queue what became dispatchable since the last."""
        still = {b.id for b in dispatchable}
        waiting = [b for b in self.pending if b.id in still]
        queued = {b.id for b in waiting}
        fresh = [b for b in dispatchable if b.id not in self.announced and b.id not in queued]
        self.pending = waiting + fresh
        self.announced = still

    def publish(self, send: Callable[[Bead], None]) -> int:
        """`send` each pending bead in dispatch order; a bead whose `send` raises stays
        pending (and so do those after it) and the exception goes to the caller."""
        sent = 0
        while self.pending:
            send(self.pending[0])
            self.pending.pop(0)
            sent += 1
        self.published += sent
        return sent


def bead_assigned(bead: Bead, record: Mapping[str, Any]) -> BeadAssigned:
    """The signal for `bead`: its id, title, requirements (cut at MAX_REQUIREMENTS_CHARS)
    and priority (beads' 0..4 as critical..low)."""
    text = requirements(record) if record else f"## {bead.title}"
    if len(text) > MAX_REQUIREMENTS_CHARS:
        text = text[:MAX_REQUIREMENTS_CHARS] + "\n\n[truncated: `show` gives it all]"
    return BeadAssigned(
        task_id=bead.id,
        spec=bead.title,
        requirements=text,
        priority=Priority.from_level(min(max(bead.priority, 0), 4)),
    )
