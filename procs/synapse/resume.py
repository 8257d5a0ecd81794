"""What a restarted synapse does with each generation a previous one left live. Pure.

    found = mutators_by_generation(running)     # factoryd's live mutators, by generation
    action(record, head, found)                  # finish_stop | stop | bisect | watch
    strays(records, found)                       # mutators of generations that are done

A mutator is traced to its generation by its start line in factoryd's tree (its
`--generation <dir>/<id>.json`), so one started just before the synapse died, before
its record was written, is found too. Never a second generation for the same red: a
live one is taken up, whatever state it was in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from procs.synapse.records import GenerationRecord

FINISH_STOP = "finish_stop"  # it was stopping: stop its mutators, then it is done
STOP = "stop"  # golden moved while the synapse was down: stop it
BISECT = "bisect"  # it was bisecting (or had started no mutator): bisect and swarm again
WATCH = "watch"  # swarming: what was started is all it gets; watch them as before
_GENERATION_ARG = re.compile(r"--generation, ([^,)]+)")


def generation_of(start: str) -> str | None:
    """The generation id a mutator was started for, from its start line in factoryd's
    tree (`procs.synapse.mutator:main(..., --generation, <dir>/<id>.json, ...)`)."""
    found = _GENERATION_ARG.search(start)
    if found is None:
        return None
    name = Path(found.group(1).strip()).name
    return name[: -len(".json")] if name.endswith(".json") else None


def serial_of(gen_id: str) -> int:
    """The number a generation id ends with (`<hash12>-<n>`); 0 if none."""
    tail = gen_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def mutators_by_generation(running: Mapping[str, str]) -> dict[str, list[str]]:
    """child id -> start line, regrouped: generation id -> its live mutators."""
    found: dict[str, list[str]] = {}
    for child, start in running.items():
        gen_id = generation_of(start)
        if gen_id is not None:
            found.setdefault(gen_id, []).append(child)
    return found


def action(record: GenerationRecord, head: str, found: Mapping[str, list[str]]) -> str:
    """What to do with a live `record` now that golden is at `head`."""
    if record.state == "stopping":
        return FINISH_STOP
    if head != record.context_hash:
        return STOP
    if record.state == "bisecting" and not found.get(record.id):
        return BISECT
    if not (record.spawned or record.children or found.get(record.id)):
        return BISECT  # swarming, but cut before its first mutator started
    return WATCH


def strays(records: Mapping[str, GenerationRecord], found: Mapping[str, list[str]]) -> list[str]:
    """Live mutators of generations this synapse knows to be done: to be stopped. A
    mutator of a generation it does not know (started by hand) is left alone."""
    return [child for gen_id, children in found.items()
            if gen_id in records and not records[gen_id].live
            for child in children]  # fmt: skip
