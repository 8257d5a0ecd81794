"""Which beads are announced (BeadAssigned), and when: newly dispatchable ones, once;
again after they left and came back; kept while the bus cannot take them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ipc.signals import Priority
from procs.beads.announce import MAX_REQUIREMENTS_CHARS, Announcements, bead_assigned
from procs.beads.ready import Bead, bead_from_record


def beads(*ids: str) -> list[Bead]:
    return [bead_from_record({"id": i, "title": i, "priority": 1}) for i in ids]


def sent(a: Announcements) -> list[str]:
    out: list[str] = []
    a.publish(lambda b: out.append(b.id))
    return out


def test_newly_dispatchable_beads_are_announced_once() -> None:
    a = Announcements()
    a.reading(beads("x", "y"))
    assert sent(a) == ["x", "y"]
    a.reading(beads("x", "y"))
    assert sent(a) == []
    a.reading(beads("y", "z"))  # x claimed, z new
    assert sent(a) == ["z"]
    a.reading(beads("x", "y", "z"))  # x back (its loop failed): announced again
    assert sent(a) == ["x"]
    assert a.published == 4


def test_what_the_bus_refused_stays_pending_while_dispatchable() -> None:
    a = Announcements()
    a.reading(beads("x", "y", "z"))

    def refuse_y(bead: Bead) -> None:
        if bead.id == "y":
            raise TimeoutError("broker queue full")

    with pytest.raises(TimeoutError):
        a.publish(refuse_y)
    assert [b.id for b in a.pending] == ["y", "z"]
    a.reading(beads("x", "z", "w"))  # y was claimed meanwhile: no longer announced
    assert sent(a) == ["z", "w"]


def test_the_signal_carries_the_requirements_and_priority() -> None:
    record = {"id": "fs-1", "title": "Slots", "description": "x" * 20000, "priority": 0,
              "created_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat()}  # fmt: skip
    signal = bead_assigned(bead_from_record(record), record)
    assert (signal.task_id, signal.spec, signal.priority) == ("fs-1", "Slots", Priority.CRITICAL)
    assert signal.requirements.startswith("## Slots\n\nxxx")
    assert len(signal.requirements) < MAX_REQUIREMENTS_CHARS + 100
    odd = bead_from_record({"id": "b", "title": "B", "priority": 9})
    assert bead_assigned(odd, {}).priority == Priority.LOW
