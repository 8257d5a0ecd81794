"""The speculative pipeline's plan, as pure data: builds follow the chain (HEAD, then
each patch ahead), at most K at once; only the head of the queue is decided; a failure
behind the head leaves the chain at once and the builds behind it are redone; a moved
golden discards every build."""

from __future__ import annotations

from procs.merge_queue.pipeline import (
    Accept,
    Build,
    Discard,
    Item,
    Land,
    Reject,
    RunSuite,
    Spec,
    plan,
)

H = "h" * 40


def built(pid: str, base: str, green: bool | None = None, running: bool = False) -> Item:
    return Item(pid, Spec(base, f"{pid}-tip"), green, running)


def test_an_empty_queue_does_nothing() -> None:
    assert plan([], H, k=4, free_slots=4) == []


def test_builds_one_at_a_time_along_the_chain_then_tests() -> None:
    assert plan([Item("a"), Item("b")], H, k=4, free_slots=4) == [Build("a", H)]
    items = [built("a", H), Item("b")]
    assert plan(items, H, k=4, free_slots=4) == [RunSuite("a"), Build("b", "a-tip")]


def test_no_more_than_k_builds_in_flight() -> None:
    items = [built("a", H, running=True), built("b", "a-tip", running=True), Item("c")]
    assert plan(items, H, k=2, free_slots=0) == []
    assert plan(items, H, k=3, free_slots=1) == [Build("c", "b-tip")]


def test_tests_wait_for_a_free_slot() -> None:
    items = [built("a", H), built("b", "a-tip")]
    assert plan(items, H, k=4, free_slots=1) == [RunSuite("a")]


def test_only_the_head_lands_and_a_green_behind_waits() -> None:
    items = [built("a", H, running=True), built("b", "a-tip", green=True)]
    assert plan(items, H, k=4, free_slots=2) == []
    items = [built("a", H, green=True), built("b", "a-tip", green=True)]
    assert plan(items, H, k=4, free_slots=2) == [Land("a")]
    assert plan(items, H, k=4, free_slots=2, landing="a") == []


def test_a_failure_at_the_head_is_rejected_and_the_chain_rebuilt() -> None:
    items = [built("a", H, green=False), built("b", "a-tip", running=True)]
    (reject,) = plan(items, H, k=4, free_slots=2)
    assert isinstance(reject, Reject) and (reject.patch_id, reject.reason) == ("a", "tests")
    after = [built("b", "a-tip", running=True)]
    assert plan(after, H, k=4, free_slots=2) == [Discard("b"), Build("b", H)]


def test_a_failure_behind_the_head_leaves_the_chain_at_once() -> None:
    items = [built("a", H, running=True), built("b", "a-tip", green=False),
             built("c", "b-tip", running=True)]  # fmt: skip
    assert plan(items, H, k=4, free_slots=2) == [Discard("c"), Build("c", "a-tip")]


def test_a_conflict_behind_the_head_waits_and_is_final_at_the_head() -> None:
    items = [built("a", H, running=True), Item("b", Spec("a-tip", None, detail="x"))]
    assert plan(items, H, k=4, free_slots=2) == []
    items = [Item("b", Spec(H, None, detail="x"))]
    assert plan(items, H, k=4, free_slots=2) == [Reject("b", "conflict", "x")]


def test_a_moved_golden_discards_the_builds() -> None:
    items = [built("a", H, green=True), built("b", "a-tip")]
    assert plan(items, "g" * 40, k=4, free_slots=2) == [Discard("a"), Build("a", "g" * 40)]


def test_contained_and_empty_patches() -> None:
    assert plan([Item("a", Spec(H, H, empty=True, contained=True))], H, k=1, free_slots=1) == [
        Accept("a")
    ]
    (reject,) = plan([Item("a", Spec(H, H, empty=True))], H, k=1, free_slots=1)
    assert isinstance(reject, Reject) and reject.reason == "stale"
