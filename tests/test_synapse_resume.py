"""What a restarted synapse does with each generation it finds live (procs/synapse/
resume.py, pure): it finishes a stop, stops a swarm whose red golden moved on, bisects
again one that was cut before any mutator started, watches one that was swarming, and
stops only mutators of generations it knows to be done."""

from __future__ import annotations

from procs.synapse import resume
from procs.synapse.records import GenerationRecord

RED, MOVED = "aa" * 20, "bb" * 20


def _record(gen_id: str, state: str, *, children: tuple[str, ...] = (),
            spawned: bool = False) -> GenerationRecord:  # fmt: skip
    record = GenerationRecord(gen_id, "tests/test_x.py", "E", RED, state=state, spawned=spawned)
    record.children = list(children)
    return record


def _start(gen_id: str, variant: int) -> str:
    return (f"procs.synapse.mutator:main(--slot-timeout-s, 10, --generation, "
            f"/s/synapse/generations/{gen_id}.json, --variant, {variant})")  # fmt: skip


def test_each_live_generation_gets_the_action_its_state_and_golden_call_for() -> None:
    running = {
        "mutators.1": _start("g-1", 0),
        "mutators.2": _start("g-1", 1),
        "mutators.3": _start("g-2", 0),
        "loops.1": "procs.loop.service:main(--bead, b)",
    }
    found = resume.mutators_by_generation(running)
    assert found == {"g-1": ["mutators.1", "mutators.2"], "g-2": ["mutators.3"]}
    swarming = _record("g-1", "swarming", children=("mutators.1",), spawned=True)
    assert resume.action(swarming, RED, found) == resume.WATCH
    assert resume.action(swarming, MOVED, found) == resume.STOP
    stopping = _record("g-1", "stopping", children=("mutators.1",))
    assert resume.action(stopping, MOVED, found) == resume.FINISH_STOP
    assert resume.action(_record("g-3", "bisecting"), RED, found) == resume.BISECT
    # cut between "swarming" and its first mutator: bisect (and swarm) again
    assert resume.action(_record("g-3", "swarming"), RED, found) == resume.BISECT
    # cut mid-spawn, its mutator started but not written yet: found, so watched
    assert resume.action(_record("g-2", "swarming"), RED, found) == resume.WATCH
    assert resume.action(_record("g-2", "bisecting"), RED, found) == resume.WATCH


def test_only_mutators_of_generations_known_to_be_done_are_strays() -> None:
    found = {"g-1": ["mutators.1"], "g-2": ["mutators.2", "mutators.3"], "by-hand": ["m.9"]}
    records = {"g-1": _record("g-1", "swarming"), "g-2": _record("g-2", "done")}
    assert resume.strays(records, found) == ["mutators.2", "mutators.3"]


def test_serial_numbers_carry_on_after_the_known_generations() -> None:
    assert [resume.serial_of(i) for i in ("0123456789ab-7", "x-12", "odd")] == [7, 12, 0]
