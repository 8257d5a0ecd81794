"""The ready rules of DESIGN.md (bd ready, beads 1.0.5) and the dispatch order.

Checked three ways: each rule on a small example; the real exports in shared/beads/
(their ready set and order, and with the `ephemeral` marks taken off so the blocking
rules meet 290 open beads); and random stores against a reference that is a literal
reading of beads' SQL (blocked_state.go's mark pass run to a fixed point, ready_work.go's
filters), plus "cycles block every member".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.beads.ready import (
    EXCLUDED_TYPES,
    ReadySet,
    bead_from_record,
    dispatch_key,
    evaluate,
    parse_time,
)

SHARED = Path(__file__).resolve().parent / "data" / "beads"  # copies of ../shared/beads
EXPORT = SHARED / "beads-issues.jsonl"
LEGACY = SHARED / "beads-issues-2025-10-legacy.jsonl"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def bead(id_: str, *deps: tuple[str, str], **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": id_,
        "title": id_,
        "status": "open",
        "priority": 2,
        "issue_type": "task",
        "created_at": "2026-01-01T00:00:00Z",
        **fields,
    }
    if deps:
        record["dependencies"] = [
            {"issue_id": id_, "depends_on_id": target, "type": kind, "metadata": "{}"}
            for target, kind in deps
        ]
    return record


def ready_ids(*recs: dict[str, Any], now: datetime = NOW) -> list[str]:
    return [b.id for b in evaluate(recs, now).ready()]


# -- the real exports ----------------------------------------------------------------------


def test_the_current_export_ready_set_and_order() -> None:
    rules = evaluate(records(EXPORT), NOW)
    got = [(b.priority, b.id) for b in rules.ready()]
    assert got == [
        (1, "aap-4ar"), (1, "bd-abc12"), (1, "bd-xyz99"), (1, "cr-xyz99"), (1, "hq-abc12"),
        (1, "offlinebrew-3d0"), (1, "offlinebrew-3d0.1"),
        (2, "hq-cv-ivmue"), (2, "hq-cv-d46qe"),
        (3, "bd-17p"), (3, "bd-o4c"), (3, "bd-019"), (3, "bd-1lc"),
    ]  # fmt: skip
    # every other open bead of this export is a wisp (ephemeral): 278 of them
    held = rules.held()
    assert len(held) == 278
    assert all("ephemeral" in v.reasons for v in held)


def test_the_legacy_export_ready_set_and_order() -> None:
    got = [b.id for b in evaluate(records(LEGACY), NOW).ready()]
    assert got == ["bd-45", "bd-49", "bd-100", "bd-102", "bd-126", "bd-127", "bd-25"]


@pytest.mark.parametrize("path", [EXPORT, LEGACY], ids=["export", "legacy"])
def test_real_exports_without_ephemeral_marks_match_the_reference(path: Path) -> None:
    recs = [{k: v for k, v in r.items() if k != "ephemeral"} for r in records(path)]
    rules = evaluate(recs, NOW)
    assert [b.id for b in rules.ready()] == reference_ready(recs, NOW)
    if path == EXPORT:  # the wisp chains and epics now meet the blocking rules
        assert len(rules.ready()) == 46
        assert sum(v.blocked for v in rules.held()) == 235


def test_every_ready_bead_of_the_export_is_open_and_unblocked() -> None:
    recs = records(EXPORT)
    by_id = {r["id"]: r for r in recs}
    for b in evaluate(recs, NOW).ready():
        assert b.status == "open" and not b.pinned and not b.ephemeral
        assert b.issue_type not in EXCLUDED_TYPES
        for dep in b.deps:
            target = by_id.get(dep.target)
            if dep.type in ("blocks", "conditional-blocks") and target:
                assert target["status"] in ("closed", "pinned")


# -- each rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["in_progress", "hooked", "blocked", "deferred", "pinned", "closed"]
)
def test_only_open_is_ready(status: str) -> None:
    assert ready_ids(bead("a", status=status), bead("b")) == ["b"]


def test_a_bead_without_status_is_open() -> None:
    record = bead("a")
    del record["status"]
    assert ready_ids(record) == ["a"]


def test_pinned_and_ephemeral_are_not_ready() -> None:
    assert ready_ids(bead("a", pinned=True), bead("b", ephemeral=True), bead("c")) == ["c"]


@pytest.mark.parametrize("kind", sorted(EXCLUDED_TYPES))
def test_excluded_types(kind: str) -> None:
    assert ready_ids(bead("a", issue_type=kind), bead("b", issue_type="epic")) == ["b"]


def test_defer_until_in_the_future_on_it_or_its_parent() -> None:
    later, earlier = "2026-03-02T00:00:00Z", "2026-02-28T00:00:00Z"
    recs = [
        bead("later", defer_until=later),
        bead("earlier", defer_until=earlier),
        bead("parent", defer_until=later, issue_type="epic"),
        bead("child", ("parent", "parent-child")),
        bead("grandchild", ("child", "parent-child")),  # beads looks one link up only
    ]
    assert ready_ids(*recs) == ["earlier", "grandchild"]
    assert ready_ids(*recs, now=datetime(2026, 3, 3, tzinfo=UTC)) == [
        "child", "earlier", "grandchild", "later", "parent",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["blocks", "conditional-blocks"])
@pytest.mark.parametrize(
    ("target_status", "blocked"),
    [("open", True), ("in_progress", True), ("blocked", True), ("deferred", True),
     ("hooked", True), ("closed", False), ("pinned", False)],
)  # fmt: skip
def test_blocking_links(kind: str, target_status: str, blocked: bool) -> None:
    recs = [bead("a", ("t", kind)), bead("t", status=target_status)]
    assert ("a" not in ready_ids(*recs)) is blocked


@pytest.mark.parametrize("kind", ["related", "discovered-from", "tracks", "relates-to"])
def test_links_that_never_block(kind: str) -> None:
    assert ready_ids(bead("a", ("t", kind)), bead("t", status="in_progress")) == ["a"]


def test_external_and_missing_targets_do_not_block() -> None:
    recs = [bead("a", ("external:gastown:gt-1", "blocks")), bead("b", ("gone", "blocks"))]
    assert ready_ids(*recs) == ["a", "b"]


def test_a_blocked_parent_blocks_its_descendants() -> None:
    recs = [
        bead("blocker"),
        bead("epic", ("blocker", "blocks"), issue_type="epic"),
        bead("child", ("epic", "parent-child")),
        bead("grandchild", ("child", "parent-child")),
        bead("other", ("free", "parent-child")),
        bead("free", issue_type="epic", status="in_progress"),
    ]
    rules = evaluate(recs, NOW)
    assert [b.id for b in rules.ready()] == ["blocker", "other"]
    assert rules.verdicts["grandchild"].reasons == ("parent child is blocked",)
    recs[0]["status"] = "closed"
    assert ready_ids(*recs) == ["child", "epic", "grandchild", "other"]


def test_a_closed_parent_is_not_blocked() -> None:
    recs = [
        bead("t"),
        bead("epic", ("t", "blocks"), status="closed"),
        bead("child", ("epic", "parent-child")),
    ]
    assert ready_ids(*recs) == ["child", "t"]


def waits(target: str, gate: str | None = None) -> dict[str, Any]:
    meta = "{}" if gate is None else orjson.dumps({"gate": gate}).decode()
    return {"issue_id": "w", "depends_on_id": target, "type": "waits-for", "metadata": meta}


@pytest.mark.parametrize(
    ("kids", "gate", "ready"),
    [
        ([], None, True),  # nothing spawned: nothing to wait for
        (["open", "closed"], None, False),
        (["closed", "pinned"], None, True),
        (["open", "closed"], "any-children", True),
        (["open", "in_progress"], "any-children", False),
        (["pinned", "open"], "any-children", False),  # pinned does not release "any"
        (["open", "closed"], "all-children", False),
    ],
)
def test_waits_for(kids: list[str], gate: str | None, ready: bool) -> None:
    recs = [bead("s", status="in_progress", issue_type="epic")]
    recs += [bead(f"k{i}", ("s", "parent-child"), status=s) for i, s in enumerate(kids)]
    w = bead("w")
    w["dependencies"] = [waits("s", gate)]
    assert ("w" in ready_ids(*recs, w)) is ready


def test_waits_for_metadata_may_be_an_object() -> None:
    recs = [bead("s", status="in_progress"), bead("k0", ("s", "parent-child"), status="closed"),
            bead("k1", ("s", "parent-child"))]  # fmt: skip
    w = bead("w")
    w["dependencies"] = [{**waits("s"), "metadata": {"gate": "any-children"}}]
    assert "w" in ready_ids(*recs, w)


def test_cycles_block_every_member() -> None:
    blocks = [bead("a", ("b", "blocks")), bead("b", ("a", "blocks")), bead("c")]
    parents = [bead("p", ("q", "parent-child")), bead("q", ("p", "parent-child")), bead("c")]
    self_loop = [bead("s", ("s", "parent-child")), bead("c")]
    for recs in (blocks, parents, self_loop):
        rules = evaluate(recs, NOW)
        assert [b.id for b in rules.ready()] == ["c"]
        assert all(any("cycle" in r for r in v.reasons) for v in rules.held()), rules.held()
    # a closed member breaks the cycle
    parents[0]["status"] = "closed"
    assert ready_ids(*parents) == ["c", "q"]


def test_dispatch_order_priority_then_oldest_then_id() -> None:
    recs = [
        bead("z", priority=2, created_at="2026-01-01T00:00:00Z"),
        bead("y", priority=0, created_at="2026-01-03T00:00:00Z"),
        bead("x", priority=2, created_at="2025-12-31T23:00:00-02:00"),  # after z in UTC
        bead("w", priority=2, created_at="2026-01-01T00:00:00Z"),
        bead("v", priority=1),
        bead("u", priority=2, created_at="not a time"),  # unreadable: last of its priority
    ]
    assert ready_ids(*recs) == ["y", "v", "w", "z", "x", "u"]


def test_dispatchable_is_ready_and_unassigned() -> None:
    rules = evaluate([bead("a", assignee="someone"), bead("b", assignee=""), bead("c")], NOW)
    assert [b.id for b in rules.ready()] == ["a", "b", "c"]
    assert [b.id for b in rules.dispatchable()] == ["b", "c"]


def test_other_record_types_are_skipped() -> None:
    recs: list[Any] = [{"_type": "config", "id": "x"}, [1, 2], {"title": "no id"}, bead("a")]
    assert ready_ids(*recs) == ["a"]


def test_go_times_with_nanoseconds() -> None:
    when = parse_time("2026-02-27T23:04:35.123456789Z")
    assert when == datetime(2026, 2, 27, 23, 4, 35, 123456, tzinfo=UTC)
    assert parse_time("2025-10-21T23:53:44.31362-07:00") is not None
    assert parse_time(None) is None and parse_time("yesterday") is None


# -- the reference, and random stores -----------------------------------------------------

DONE = ("closed", "pinned")


def reference_ready(recs: list[dict[str, Any]], now: datetime) -> list[str]:
    """A literal reading of beads 1.0.5: is_blocked by repeated mark passes (cycle
    members held blocked), then ready_work.go's filters, then our order."""
    beads = {}
    for r in recs:
        try:
            b = bead_from_record(r)
        except ValueError:
            continue
        beads[b.id] = b
    children: dict[str, list[str]] = {}
    for b in beads.values():
        for d in b.deps:
            if d.type == "parent-child":
                children.setdefault(d.target, []).append(b.id)

    def live(i: str) -> bool:
        return i in beads and beads[i].status not in DONE

    def waiting_on(i: str) -> set[str]:  # what a bead's links make it wait for
        out = set()
        for d in beads[i].deps:
            if d.type in ("blocks", "conditional-blocks", "parent-child"):
                out.add(d.target)
            elif d.type == "waits-for":
                out.update(children.get(d.target, ()))
        return {t for t in out if live(t)}

    def in_cycle(i: str) -> bool:  # reachable from itself, through live beads
        seen, todo = set(), list(waiting_on(i))
        while todo:
            j = todo.pop()
            if j == i:
                return True
            if j not in seen:
                seen.add(j)
                todo.extend(waiting_on(j))
        return False

    blocked = {i: live(i) and in_cycle(i) for i in beads}
    changed = True
    while changed:
        changed = False
        for i, b in beads.items():
            if blocked[i] or b.status in DONE:
                continue
            mark = False
            for d in b.deps:
                by_link = d.type in ("blocks", "conditional-blocks") and live(d.target)
                by_parent = d.type == "parent-child" and blocked.get(d.target, False)
                if by_link or by_parent:
                    mark = True
                elif d.type == "waits-for":
                    kids = [beads[k] for k in children.get(d.target, ())]
                    if any(k.status not in DONE for k in kids) and not (
                        d.any_children and any(k.status == "closed" for k in kids)
                    ):
                        mark = True
            if mark:
                blocked[i] = changed = True

    def deferred(b: Any) -> bool:
        return b.defer_until is not None and b.defer_until > now

    ready = [
        b
        for b in beads.values()
        if b.status == "open"
        and not b.pinned
        and not b.ephemeral
        and b.issue_type not in EXCLUDED_TYPES
        and not deferred(b)
        and not any(p in beads and deferred(beads[p]) for p in b.parents)
        and not blocked[b.id]
    ]
    return [b.id for b in sorted(ready, key=dispatch_key)]


STATUSES = ["open", "open", "open", "in_progress", "closed", "closed", "pinned", "blocked"]
KINDS = ["blocks", "conditional-blocks", "parent-child", "parent-child", "waits-for",
         "related", "discovered-from"]  # fmt: skip
TIMES = ["2026-02-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-01-15T08:00:00+02:00"]


@st.composite
def stores(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 9))
    ids = [f"b{i}" for i in range(n)]
    out = []
    for i in ids:
        deps = []
        for _ in range(draw(st.integers(0, 3))):
            target = draw(st.sampled_from([*ids, "missing", "external:x:y"]))
            kind = draw(st.sampled_from(KINDS))
            gate = draw(st.sampled_from([None, "any-children", "all-children"]))
            meta = orjson.dumps({"gate": gate}).decode() if gate else "{}"
            deps.append({"issue_id": i, "depends_on_id": target, "type": kind, "metadata": meta})
        record: dict[str, Any] = {
            "id": i,
            "title": i,
            "status": draw(st.sampled_from(STATUSES)),
            "priority": draw(st.integers(0, 4)),
            "issue_type": draw(st.sampled_from(["task", "bug", "epic", "gate", "message"])),
            "created_at": draw(st.sampled_from(TIMES)),
            "dependencies": deps,
        }
        if draw(st.integers(0, 5)) == 0:
            record["defer_until"] = draw(st.sampled_from(["2026-02-01T00:00:00Z",
                                                          "2026-04-01T00:00:00Z"]))  # fmt: skip
        if draw(st.integers(0, 7)) == 0:
            record["pinned"] = True
        if draw(st.integers(0, 7)) == 0:
            record["ephemeral"] = True
        if draw(st.integers(0, 3)) == 0:
            record["assignee"] = "someone"
        out.append(record)
    return out


@settings(max_examples=250, deadline=None)
@given(stores())
def test_random_stores_match_the_reference(recs: list[dict[str, Any]]) -> None:
    rules = evaluate(recs, NOW)
    assert [b.id for b in rules.ready()] == reference_ready(recs, NOW)
    assert [b.id for b in rules.dispatchable()] == [b.id for b in rules.ready() if not b.assignee]
    for verdict in rules.verdicts.values():  # a bead is ready exactly when nothing holds it
        assert verdict.ready == (verdict.bead in rules.ready())


@settings(max_examples=60, deadline=None)
@given(stores(), st.randoms())
def test_the_ready_set_does_not_depend_on_line_order(recs: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = list(recs)
    rnd.shuffle(shuffled)
    assert [b.id for b in evaluate(shuffled, NOW).ready()] == [
        b.id for b in evaluate(recs, NOW).ready()
    ]


def test_a_long_parent_chain_is_no_recursion() -> None:
    recs = [bead("b0", ("x", "blocks")), bead("x")]
    recs += [bead(f"b{i}", (f"b{i - 1}", "parent-child")) for i in range(1, 5000)]
    rules = ReadySet([bead_from_record(r) for r in recs], NOW)
    assert [b.id for b in rules.ready()] == ["x"]
    assert rules.is_blocked("b4999")


def test_now_matters_only_for_defer() -> None:
    recs = records(LEGACY)
    later = NOW + timedelta(days=3650)
    assert ready_ids(*recs) == ready_ids(*recs, now=later)
