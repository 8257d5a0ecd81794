"""The synapse's SQLite memory (procs/synapse/store.py): what a restarted synapse reads
back is what it wrote, every live generation comes back whatever its age, a row it
cannot read is named rather than fatal, and a mutator is traced to its generation by
its start line in factoryd's tree."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from procs.synapse.records import GenerationRecord
from procs.synapse.resume import generation_of
from procs.synapse.store import StoreError, SynapseStore


def _record(n: int, state: str, started_at: float) -> GenerationRecord:
    record = GenerationRecord(f"{'ab' * 6}-{n}", "tests/test_core.py", "E assert 1 == 2",
                              "ab" * 20, started_at=started_at, state=state)  # fmt: skip
    record.children = [f"mutators.{n}.{i}" for i in range(2)]
    record.culprit, record.bisect_ms, record.size, record.spawned = "cd" * 20, 12.5, 2, True
    record.stop_ms = 3.25 if state == "done" else None
    return record


def test_what_a_restarted_synapse_reads_is_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "synapse.sqlite3"
    store = SynapseStore(path)
    records = [_record(1, "swarming", 10.0), _record(2, "stopping", 20.0),
               _record(3, "done", 30.0)]  # fmt: skip
    for record in records:
        store.save(record, counts={"generations": 3, "mutators": 6})
    records[0].children.append("mutators.9")  # a later change overwrites the row
    store.save(records[0])
    store.set_fact("known_good", "ef" * 20)
    store.close()

    again = SynapseStore(path)
    loaded, bad = again.load(keep=20)
    assert bad == [] and [r.snapshot() for r in loaded] == [r.snapshot() for r in records]
    assert [r.cancelled.is_set() for r in loaded] == [False, True, True]
    assert again.fact("counts") == {"generations": 3, "mutators": 6}
    assert again.fact("known_good") == "ef" * 20 and again.fact("nothing", 7) == 7
    assert path.stat().st_mode & 0o777 == 0o600
    again.close()


def test_every_live_generation_comes_back_and_only_the_newest_done_ones(tmp_path: Path) -> None:
    store = SynapseStore(tmp_path / "synapse.sqlite3")
    store.save(_record(1, "bisecting", 1.0))  # the oldest of all, but live
    for n in range(2, 8):
        store.save(_record(n, "done", float(n)))
    loaded, _ = store.load(keep=2)
    assert [r.id.rsplit("-", 1)[1] for r in loaded] == ["1", "6", "7"]
    store.forget([loaded[0].id])
    assert [r.state for r in store.load(keep=0)[0]] == []
    store.close()


def test_a_row_it_cannot_read_is_named_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "synapse.sqlite3"
    store = SynapseStore(path)
    store.save(_record(1, "swarming", 1.0))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO generations VALUES ('x-2', 'h', 'swarming', 2.0, '{\"id\": 1}')")
        db.execute("INSERT INTO generations VALUES ('x-3', 'h', 'swarming', 3.0, 'not json')")
        db.execute("INSERT INTO generations VALUES ('x-4', 'h', 'swarming', 4.0, "
                   "'{\"id\": \"x-4\", \"file\": \"\", \"error\": \"\", \"context_hash\": \"h\", "
                   "\"state\": \"gone\"}')")  # fmt: skip
    store = SynapseStore(path)
    loaded, bad = store.load(keep=5)
    assert [r.id for r in loaded] == [f"{'ab' * 6}-1"] and sorted(bad) == ["x-2", "x-3", "x-4"]
    store.close()


def test_a_database_it_cannot_open_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "synapse.sqlite3").write_text("this is not a database, it is a text file " * 40)
    with pytest.raises(StoreError, match=r"synapse\.sqlite3"):
        SynapseStore(tmp_path / "synapse.sqlite3")


def test_a_mutator_is_traced_to_its_generation_by_its_start_line() -> None:
    start = ("procs.synapse.mutator:main(--slot-timeout-s, 10, --generation, "
             "/var/lib/f/synapse/generations/0123456789ab-7.json, --variant, 3)")  # fmt: skip
    assert generation_of(start) == "0123456789ab-7"
    assert generation_of("procs.synapse.mutator:main(--variant, 3)") is None
    assert generation_of("procs.synapse.mutator:main(--generation, /tmp/g.txt)") is None
