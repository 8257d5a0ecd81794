"""The JSONL store: a change rewrites one bead's changed fields and no other byte;
malformed lines are counted, reported and kept; an edit made while we write survives."""

from __future__ import annotations

import fcntl
import io
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.beads import cli
from procs.beads._splice import splice
from procs.beads.edits import Refused
from procs.beads.jsonl import DELETE, JsonlFile, StoreError, WriteConflict, read_snapshot
from procs.beads.store import JsonlBackend

SHARED = Path(__file__).resolve().parent / "data" / "beads"  # copies of ../shared/beads
EXPORT = SHARED / "beads-issues.jsonl"
LEGACY = SHARED / "beads-issues-2025-10-legacy.jsonl"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def copy(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "issues.jsonl"
    shutil.copyfile(source, path)
    return path


def backend(path: Path, **kw: Any) -> JsonlBackend:
    return JsonlBackend(path, clock=lambda: NOW, file=JsonlFile(path, **kw))


def changed_lines(before: bytes, after: bytes) -> list[int]:
    a, b = before.split(b"\n"), after.split(b"\n")
    assert len(a) == len(b), "a rewrite added or dropped lines"
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def members_kept(old: bytes, new: bytes, changed: set[str]) -> None:
    """Every member of `old` not in `changed` appears in `new` with its exact bytes, and
    the keys keep their order."""
    old_obj, new_obj = orjson.loads(old), orjson.loads(new)
    kept = [k for k in old_obj if k not in changed]
    assert [k for k in new_obj if k in kept] == kept
    for key in kept:
        raw = orjson.dumps(key).decode()
        assert raw.encode() in new, key
        assert new_obj[key] == old_obj[key]


@pytest.mark.parametrize("source", [EXPORT, LEGACY], ids=["export", "legacy"])
def test_a_claim_rewrites_only_the_changed_fields_of_one_line(tmp_path: Path, source: Path) -> None:
    path = copy(tmp_path, source)
    before = path.read_bytes()
    store = backend(path)
    target = store.read().dispatchable[0]
    store.claim(target.id, "factory/7")
    after = path.read_bytes()
    (index,) = changed_lines(before, after)
    old, new = before.split(b"\n")[index], after.split(b"\n")[index]
    members_kept(old, new, {"status", "assignee", "updated_at", "started_at"})
    record = orjson.loads(new)
    assert (record["id"], record["status"], record["assignee"]) == (
        target.id, "in_progress", "factory/7",
    )  # fmt: skip
    # written in the line's own style: spaced or compact
    assert (b'"status": "in_progress"' in new) == (b'"id": "' in old)


def test_close_and_fail_on_the_real_export(tmp_path: Path) -> None:
    path = copy(tmp_path, EXPORT)
    store = backend(path)
    first, second = (b.id for b in store.read().dispatchable[:2])
    for bead_id in (first, second):
        store.claim(bead_id, "factory/a")
    before = path.read_bytes()
    store.close(first, "factory/a", "landed", {"commits": 3, "reverts": 1})
    store.fail(second, "factory/a", "tests timed out", attempt=1, max_attempts=3)
    after = path.read_bytes()
    assert len(changed_lines(before, after)) == 2
    snap = read_snapshot(path)
    closed, failed = snap.records[first], snap.records[second]
    assert closed["status"] == "closed"
    assert closed["close_reason"] == "landed (commits 3, reverts 1)"
    assert closed["metadata"]["factory"] == {"closed_by": "factory/a", "commits": 3, "reverts": 1}
    assert failed["status"] == "open" and "assignee" not in failed
    assert failed["comments"][-1]["text"] == "factory: attempt 1 of 3 failed: tests timed out"
    assert failed["comment_count"] == 1


def test_go_escapes_in_unchanged_fields_survive(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    line = (
        b'{"id":"bd-1","title":"a \\u003cb\\u003e \\u0026 c","description":"caf\\u00e9",'
        b'"status":"open","priority":1,"estimate":1.50,"labels":["x","y"]}'
    )
    path.write_bytes(line + b"\n")
    backend(path).claim("bd-1", "factory/7")
    new = path.read_bytes()
    assert new.startswith(line.split(b',"status"')[0] + b',"status":"in_progress"')
    assert b'"estimate":1.50,"labels":["x","y"]' in new
    assert new.endswith(b',"assignee":"factory/7","updated_at":"2026-03-01T12:00:00Z",'
                        b'"started_at":"2026-03-01T12:00:00Z"}\n')  # fmt: skip


MALFORMED = b"""{"id": "a", "title": "A", "status": "open", "priority": 1}
{"id": "b", "title": "B", "status": "open"
not json at all

[1, 2, 3]
{"title": "no id", "status": "open"}
{"_type": "config", "key": "value"}
{"id": "c", "title": "C", "status": "open", "priority": 0}\r
\xff\xfe{"id": "d"}
{"id": "e", "title": "E", "status": "open", "priority": 2}"""  # no final newline


def test_malformed_lines_are_counted_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_bytes(MALFORMED)
    snap = read_snapshot(path)
    assert snap.malformed_lines == 5
    assert [m["line"] for m in snap.malformed_report()] == [2, 3, 5, 6, 9]
    assert snap.malformed_report()[1]["error"].startswith("not JSON")
    store = backend(path)
    assert [b.id for b in store.read().ready] == ["c", "a", "e"]
    store.claim("e", "factory/1")
    store.claim("c", "factory/1")
    after = path.read_bytes()
    assert changed_lines(MALFORMED, after) == [7, 9]
    assert after.split(b"\n")[7].endswith(b"}\r")  # CRLF kept on the changed line
    assert not after.endswith(b"\n")  # nor a final newline added
    assert read_snapshot(path).malformed_lines == 5


def test_the_cli_reports_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_bytes(MALFORMED)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["ready", "--jsonl", str(path), "--json"], out, err) == 0
    body = orjson.loads(out.getvalue())
    assert [b["id"] for b in body["ready"]] == ["c", "a", "e"]
    assert body["malformed_lines"] == 5
    assert body["ready"][0] == {
        "id": "c", "title": "C", "priority": 0, "status": "open", "issue_type": "task",
        "assignee": None, "created_at": None,
    }  # fmt: skip
    assert path.read_bytes() == MALFORMED


def test_the_cli_on_the_real_export_in_dispatch_order(tmp_path: Path) -> None:
    path = copy(tmp_path, EXPORT)
    backend(path).claim("bd-abc12", "factory/9")
    before = path.read_bytes()
    out = io.StringIO()
    args = ["ready", "--jsonl", str(path), "--json", "--now", "2026-03-01T00:00:00Z"]
    assert cli.main(args, out, io.StringIO()) == 0
    ids = [b["id"] for b in orjson.loads(out.getvalue())["ready"]]
    assert ids[:3] == ["aap-4ar", "bd-xyz99", "cr-xyz99"]  # claimed: in progress, not ready
    out = io.StringIO()
    assert cli.main([*args, "--unassigned"], out, io.StringIO()) == 0
    assert orjson.loads(out.getvalue())["malformed_lines"] == 0
    assert path.read_bytes() == before  # reads, never writes


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_the_cli_exits_2_on_a_file_it_cannot_read(tmp_path: Path, what: str) -> None:
    path = tmp_path / "issues.jsonl"
    if what == "directory":
        path.mkdir()
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["ready", "--jsonl", str(path), "--json"], out, err) == 2
    assert out.getvalue() == ""
    assert str(path) in err.getvalue()
    assert ("no such file" if what == "missing" else "is a directory") in err.getvalue()


def test_an_edit_made_while_we_write_loses_neither_edit(tmp_path: Path) -> None:
    path = copy(tmp_path, EXPORT)
    target = "bd-xyz99"
    other = "bd-kwro"

    def someone_edits() -> None:  # an editor saves between our write and our rename
        if store.file.retries == 0:
            snap = read_snapshot(path)
            data = path.read_bytes()
            for bead_id, patch in ((other, {"title": "renamed"}), (target, {"notes": "theirs"})):
                raw = snap.lines[snap.line_of[bead_id]].raw
                data = data.replace(raw, splice(raw, patch))
            path.write_bytes(data + b'{"id": "new-1", "title": "added", "status": "open"}\n')

    store = backend(path, before_rename=someone_edits)
    store.claim(target, "factory/3")
    assert store.file.retries == 1
    snap = read_snapshot(path)
    assert snap.records[other]["title"] == "renamed"
    assert snap.records["new-1"]["title"] == "added"
    mine = snap.records[target]
    assert (mine["notes"], mine["status"], mine["assignee"]) == (
        "theirs", "in_progress", "factory/3",
    )  # fmt: skip


def test_an_edit_of_the_same_bead_that_takes_it_wins(tmp_path: Path) -> None:
    path = copy(tmp_path, EXPORT)
    target = "bd-xyz99"

    def someone_claims() -> None:
        if store.file.retries == 0:
            snap = read_snapshot(path)
            raw = snap.lines[snap.line_of[target]].raw
            path.write_bytes(path.read_bytes().replace(raw, splice(raw, {"assignee": "human"})))

    store = backend(path, before_rename=someone_claims)
    with pytest.raises(Refused, match="assigned to human"):
        store.claim(target, "factory/3")
    record = read_snapshot(path).records[target]
    assert (record["status"], record["assignee"]) == ("open", "human")
    assert not list(tmp_path.glob(".issues.jsonl.*.tmp"))


def test_a_writer_holding_the_lock_makes_us_wait_then_give_up(tmp_path: Path) -> None:
    path = copy(tmp_path, LEGACY)
    before = path.read_bytes()
    store = backend(path, lock_timeout_s=0.2)
    fd = os.open(store.file.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(WriteConflict, match="still locked"):
            store.claim("bd-45", "factory/1")
    finally:
        os.close(fd)
    assert path.read_bytes() == before
    store.claim("bd-45", "factory/1")  # the lock is free again


def test_a_write_keeps_the_file_mode(tmp_path: Path) -> None:
    path = copy(tmp_path, LEGACY)
    path.chmod(0o640)
    backend(path).claim("bd-45", "factory/1")
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_missing_bead_and_a_missing_file_are_errors(tmp_path: Path) -> None:
    path = copy(tmp_path, LEGACY)
    with pytest.raises(StoreError, match="no bead 'nope'"):
        backend(path).claim("nope", "factory/1")
    with pytest.raises(StoreError, match="no such file"):
        backend(tmp_path / "gone.jsonl").read()


def test_duplicate_ids_are_noted(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_bytes(b'{"id": "a", "title": "one"}\n{"id": "a", "title": "two"}\n')
    view = backend(path).read()
    assert [b.title for b in view.ready] == ["two"]
    assert view.notes == ["bead a appears on more than one line: the last one counts"]


# -- splicing, on random objects ------------------------------------------------------------

keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(keys, values, max_size=6),
    st.dictionaries(keys, values | st.just(DELETE), max_size=4),
    st.sampled_from([(", ", ": "), (",", ":")]),
    st.booleans(),
)
def test_splice_sets_and_deletes_and_keeps_order(
    obj: dict[str, Any], patch: dict[str, Any], separators: tuple[str, str], ascii_only: bool
) -> None:
    import json

    line = json.dumps(obj, separators=separators, ensure_ascii=ascii_only).encode()
    got = json.loads(splice(line, patch))
    want = {k: v for k, v in obj.items() if patch.get(k) is not DELETE}
    for k, v in patch.items():
        if v is not DELETE:
            want[k] = v
    assert got == want
    assert list(got) == list(want)  # kept keys in place, new ones at the end


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 138),
            st.sampled_from(["title", "notes", "labels", "priority", "x_unknown"]),
            st.text(max_size=12) | st.integers(0, 4) | st.lists(st.text(max_size=4), max_size=2),
        ),
        max_size=6,
    ),
    st.integers(0, 3),
)
def test_edits_landing_mid_write_are_all_kept(
    tmp_path_factory: pytest.TempPathFactory, theirs: list[tuple[int, str, Any]], added: int
) -> None:
    path = copy(tmp_path_factory.mktemp("race"), LEGACY)
    ids = list(read_snapshot(path).records)
    target = "bd-45"
    expected: dict[str, dict[str, Any]] = {}

    def they_write() -> None:
        if store.file.retries:
            return
        snap = read_snapshot(path)
        data = snap.data
        for index, key, value in theirs:
            bead_id = ids[index]
            raw = read_snapshot_bytes(data).lines[snap.line_of[bead_id]].raw
            data = data.replace(raw, splice(raw, {key: value}), 1)
            expected.setdefault(bead_id, {})[key] = value
        for i in range(added):
            data += orjson.dumps({"id": f"new-{i}", "title": "theirs"}) + b"\n"
        path.write_bytes(data)

    store = backend(path, before_rename=they_write)
    store.claim(target, "factory/5")
    snap = read_snapshot(path)
    for bead_id, fields in expected.items():
        for key, value in fields.items():
            assert snap.records[bead_id][key] == value
    assert (snap.records[target]["status"], snap.records[target]["assignee"]) == (
        "in_progress",
        "factory/5",
    )
    assert all(f"new-{i}" in snap.records for i in range(added))
    assert snap.malformed_lines == 0 and len(snap.records) == 139 + added


def read_snapshot_bytes(data: bytes) -> Any:
    from procs.beads.jsonl import parse

    return parse(Path("-"), data)


def test_the_cli_shows_one_beads_requirements(tmp_path: Path) -> None:
    path = copy(tmp_path, LEGACY)
    out = io.StringIO()
    assert cli.main(["show", "--jsonl", str(path), "bd-10", "--json"], out, io.StringIO()) == 0
    body = orjson.loads(out.getvalue())
    assert body["title"] == "Make beads reusable as a Go library for external projects like vc"
    assert body["requirements"].startswith(f"## {body['title']}\n\nCurrently beads is only")
    err = io.StringIO()
    assert cli.main(["show", "--jsonl", str(path), "nope"], io.StringIO(), err) == 1
    assert "no bead 'nope' among 139" in err.getvalue()


@pytest.mark.parametrize("source", [EXPORT, LEGACY], ids=["export", "legacy"])
def test_the_requirements_are_the_loops_text(source: Path) -> None:
    """The same text procs/loop/bead_text.py makes, so the loop can take it from here."""
    from procs.beads.text import requirements
    from procs.loop.bead_text import read_bead

    snap = read_snapshot(source)
    for bead_id in list(snap.records)[::7]:
        assert requirements(snap.records[bead_id]) == read_bead(source, bead_id).requirements
