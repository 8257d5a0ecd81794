"""The speculative pipeline as a pure function (Zuul's dependent pipeline, K deep).

    plan(items, head, k=K, free_slots=N, landing=None) -> [Action, ...]

`items` are the waiting patches in queue order, each with what is known of it: its
speculative build (`Spec`: the base it was built on and the commit, or a conflict) and
its test result. The chain: item 0's base must be golden `head`; item i+1's base is item
i's commit, unless item i is out of the chain (a conflict, a failed test, or nothing to
add), in which case it is item i's own base. A build whose base is not what the chain
says is discarded (its run cancelled). Only item 0, built on `head`, is decided.

Actions, carried out by the service in order (then it asks again):
    Discard(id)        the build (and any run or result) no longer fits the chain
    Build(id, base)    make item id's speculative commit on `base` (at most one per plan:
                       later bases depend on it)
    RunSuite(id)       run the suite on the build (a free slot is there)
    Land(id)           advance golden from spec.base to spec.tip (CAS)
    Accept(id)         already contained in golden: nothing to move
    Reject(id, reason, detail)
No I/O, no clock: tests drive it with plain data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    """A speculative build on `base`: `tip` (None: it conflicts there), `empty` (it adds
    nothing to `base`), `contained` (the patch's commits are already in `base`)."""

    base: str
    tip: str | None
    empty: bool = False
    contained: bool = False
    detail: str = ""

    @property
    def in_chain(self) -> bool:
        return self.tip is not None and not self.empty


@dataclass(frozen=True)
class Item:
    patch_id: str
    spec: Spec | None = None
    green: bool | None = None  # the suite's verdict on spec.tip (None: not yet)
    running: bool = False


@dataclass(frozen=True)
class Discard:
    patch_id: str


@dataclass(frozen=True)
class Build:
    patch_id: str
    base: str


@dataclass(frozen=True)
class RunSuite:
    patch_id: str


@dataclass(frozen=True)
class Land:
    patch_id: str


@dataclass(frozen=True)
class Accept:
    patch_id: str


@dataclass(frozen=True)
class Reject:
    patch_id: str
    reason: str  # conflict | tests | stale
    detail: str = ""


Action = Discard | Build | RunSuite | Land | Accept | Reject


def plan(
    items: Sequence[Item], head: str, *, k: int, free_slots: int, landing: str | None = None
) -> list[Action]:
    """What to do next (see the module docstring). `landing`: the patch whose advance is
    in flight (nothing else is decided until it is answered)."""
    actions: list[Action] = []
    base, active = head, 0
    for position, item in enumerate(items):
        spec, green, running = item.spec, item.green, item.running
        if spec is not None and spec.base != base:
            actions.append(Discard(item.patch_id))
            spec, green, running = None, None, False
        if spec is None:
            if active < k:
                actions.append(Build(item.patch_id, base))
            return actions
        if position == 0 and landing is None:
            decided = _decide(item.patch_id, spec, green)
            if decided is not None:
                actions.append(decided)
                return actions  # the queue changed: ask again
        if not spec.in_chain or green is False:
            continue  # out of the chain: the next one builds on the same base
        active += 1
        if green is None and not running and free_slots > 0:
            actions.append(RunSuite(item.patch_id))
            free_slots -= 1
        assert spec.tip is not None
        base = spec.tip
        if active >= k:
            break
    return actions


def _decide(patch_id: str, spec: Spec, green: bool | None) -> Action | None:
    """Item 0, built on golden HEAD: final once its build or its result says so."""
    if spec.contained:
        return Accept(patch_id)
    if spec.tip is None:
        return Reject(patch_id, "conflict", spec.detail or "does not apply to golden HEAD")
    if spec.empty:
        return Reject(patch_id, "stale", "it changes nothing on golden HEAD")
    if green is True:
        return Land(patch_id)
    if green is False:
        return Reject(patch_id, "tests", "the suite failed on golden HEAD + this patch")
    return None
