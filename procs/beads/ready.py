"""Which beads are ready, and in which order the dispatcher takes them. Pure: no I/O.

The rules are `bd ready`'s, as beads 1.0.5 computes them (internal/storage/issueops:
ready_work.go, blocked_state.go); DESIGN.md "Beads" states them. A bead is ready when

- its status is `open`;
- it is not `pinned` and not `ephemeral`;
- its `issue_type` is none of EXCLUDED_TYPES;
- its `defer_until` is not in the future, nor its parent's (a direct parent: beads looks
  one `parent-child` link up, no further);
- it is not blocked. A bead that is neither closed nor pinned is blocked when
  - a `blocks` or `conditional-blocks` target exists and is neither closed nor pinned,
  - a parent (its `parent-child` target) is blocked, or
  - a `waits-for` target has a child that is neither closed nor pinned, unless the
    dependency's metadata says `gate: any-children` and one child has closed.
  A target that is not in the store (an `external:` reference, a bead not exported)
  blocks nothing: beads joins on the target and finds no row. `related`,
  `discovered-from`, `tracks` and the other link types never block.
- Cycles block every member: beads refuses to create them, so one found in a store came
  from outside, and no member is taken as ready (beads' fixed-point would leave a
  `parent-child` cycle unblocked; we do not run what we cannot order).

Dispatch order is not bd's default (its "hybrid" sort depends on the clock): priority 0
first, then the oldest `created_at`, then the id. Dispatchable = ready and unassigned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

EXCLUDED_TYPES = frozenset({"merge-request", "gate", "molecule", "message", "agent", "role", "rig"})
BLOCKING_TYPES = frozenset({"blocks", "conditional-blocks"})
PARENT = "parent-child"
WAITS_FOR = "waits-for"
DONE = frozenset({"closed", "pinned"})  # statuses that release a blocker
DEFAULT_PRIORITY = 2  # beads' default; a bead without a usable priority sorts with P2
_NEVER = datetime.max.replace(tzinfo=UTC)


class NotABead(ValueError):
    """A JSONL record that is not an issue (another `_type`, no id); the message says which."""


@dataclass(frozen=True, slots=True)
class Dep:
    """One dependency of a bead: it depends on `target` through a link of `type`."""

    target: str
    type: str
    any_children: bool = False  # waits-for with gate: any-children


@dataclass(frozen=True, slots=True)
class Bead:
    """What the rules need of one issue record (the record itself stays with the store)."""

    id: str
    title: str
    status: str
    priority: int
    issue_type: str
    assignee: str
    created_at: datetime  # _NEVER when missing or unreadable: sorts last
    defer_until: datetime | None
    pinned: bool
    ephemeral: bool
    deps: tuple[Dep, ...]

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(d.target for d in self.deps if d.type == PARENT)

    def summary(self) -> dict[str, Any]:
        """The fields a ready listing shows."""
        return {
            "id": self.id,
            "title": self.title,
            "priority": self.priority,
            "status": self.status,
            "issue_type": self.issue_type,
            "assignee": self.assignee or None,
            "created_at": None if self.created_at is _NEVER else self.created_at.isoformat(),
        }


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as beads writes it (Go: 'Z' or an offset, up to 9 fractional
    digits); None when absent or unreadable. A time without a zone is taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if "." in text:  # Python reads at most 6 fractional digits; Go writes up to 9
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[: min(digits, 6)] + rest[digits:]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _metadata(value: Any) -> Mapping[str, Any]:
    """A dependency's metadata: beads exports it as a JSON string ("{}"); a dict is taken too."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, Mapping) else {}
    return {}


def _priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_PRIORITY
    if isinstance(value, float) and not math.isfinite(value):
        return DEFAULT_PRIORITY
    return int(value)


def bead_from_record(record: Any) -> Bead:
    """The rules' view of one JSONL record. Raises NotABead for a record that is not an
    issue: not an object, `_type` other than "issue", no string id."""
    if not isinstance(record, Mapping):
        raise NotABead(f"not a JSON object but {type(record).__name__}")
    kind = record.get("_type", "issue")
    if kind != "issue":
        raise NotABead(f"_type is {kind!r}, not 'issue'")
    bead_id = record.get("id")
    if not isinstance(bead_id, str) or not bead_id:
        raise NotABead("no string 'id'")
    deps = []
    for raw in record.get("dependencies") or ():
        if not isinstance(raw, Mapping):
            continue
        target, dep_type = raw.get("depends_on_id"), raw.get("type")
        source = raw.get("issue_id", bead_id)
        if not isinstance(target, str) or not isinstance(dep_type, str) or source != bead_id:
            continue  # a dependency of another issue, or unreadable: not this bead's link
        any_children = _metadata(raw.get("metadata")).get("gate") == "any-children"
        deps.append(Dep(target, dep_type, any_children and dep_type == WAITS_FOR))
    return Bead(
        id=bead_id,
        title=str(record.get("title") or ""),
        status=str(record.get("status") or "open"),  # beads omits an empty status: open
        priority=_priority(record.get("priority")),
        issue_type=str(record.get("issue_type") or "task"),
        assignee=str(record.get("assignee") or ""),
        created_at=parse_time(record.get("created_at")) or _NEVER,
        defer_until=parse_time(record.get("defer_until")),
        pinned=record.get("pinned") is True,
        ephemeral=record.get("ephemeral") is True,
        deps=tuple(deps),
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a bead is ready, and if not every reason why (in words an operator reads)."""

    bead: Bead
    reasons: tuple[str, ...]
    blocked: bool  # beads' is_blocked: held by a dependency, a parent or a cycle

    @property
    def ready(self) -> bool:
        return not self.reasons


def dispatch_key(bead: Bead) -> tuple[int, datetime, str]:
    """Priority 0 first, then the oldest, then the id (a total order)."""
    return (bead.priority, bead.created_at, bead.id)


class ReadySet:
    """The rules evaluated over one store's beads at `now` (UTC-aware)."""

    def __init__(self, beads: Iterable[Bead], now: datetime) -> None:
        self.beads: dict[str, Bead] = {b.id: b for b in beads}
        self.now = now
        self._children: dict[str, list[str]] = {}
        for bead in self.beads.values():
            for parent in bead.parents:
                self._children.setdefault(parent, []).append(bead.id)
        self._cycle = _cycle_members(self.beads)
        self._blocking = {i: self._direct_blockers(b) for i, b in self.beads.items()}
        self._blocked = self._propagate()
        self.verdicts = {i: self._verdict(b) for i, b in self.beads.items()}

    # -- the public face ----------------------------------------------------------------

    def ready(self) -> list[Bead]:
        """Every ready bead, in dispatch order."""
        return sorted((v.bead for v in self.verdicts.values() if v.ready), key=dispatch_key)

    def dispatchable(self) -> list[Bead]:
        """Ready and unassigned, in dispatch order: what the dispatcher may claim."""
        return [b for b in self.ready() if not b.assignee]

    def is_blocked(self, bead_id: str) -> bool:
        return bead_id in self._blocked

    def held(self) -> list[Verdict]:
        """Open beads that are not ready (blocked, deferred, excluded), dispatch order."""
        out = [v for v in self.verdicts.values() if v.bead.status == "open" and not v.ready]
        return sorted(out, key=lambda v: dispatch_key(v.bead))

    # -- the rules ------------------------------------------------------------------------

    def _live(self, bead_id: str) -> bool:
        """The bead exists and is neither closed nor pinned (so it can block)."""
        bead = self.beads.get(bead_id)
        return bead is not None and bead.status not in DONE

    def _direct_blockers(self, bead: Bead) -> list[str]:
        if bead.status in DONE:
            return []
        reasons = []
        for dep in bead.deps:
            if dep.type in BLOCKING_TYPES and self._live(dep.target):
                target = self.beads[dep.target]
                reasons.append(f"{dep.type} on {dep.target} ({target.status})")
            elif dep.type == WAITS_FOR:
                kids = [self.beads[c] for c in self._children.get(dep.target, ())]
                waiting = [k.id for k in kids if k.status not in DONE]
                if waiting and not (dep.any_children and any(k.status == "closed" for k in kids)):
                    gate = "any" if dep.any_children else "all"
                    reasons.append(
                        f"waits for {gate} children of {dep.target}: "
                        f"{len(waiting)} not closed ({', '.join(sorted(waiting)[:3])}"
                        + (", ..." if len(waiting) > 3 else "")
                        + ")"
                    )
        if bead.id in self._cycle:
            reasons.append(f"in a dependency cycle ({self._cycle[bead.id]})")
        return reasons

    def _propagate(self) -> dict[str, str]:
        """bead id -> the first reason it is blocked, a blocked parent's included."""
        blocked: dict[str, str] = {i: r[0] for i, r in self._blocking.items() if r}
        # A blocked parent blocks its live children, and theirs: walk down from each.
        stack = list(blocked)
        while stack:
            parent = stack.pop()
            for child in self._children.get(parent, ()):
                if child not in blocked and self.beads[child].status not in DONE:
                    blocked[child] = f"parent {parent} is blocked"
                    stack.append(child)
        return blocked

    def _verdict(self, bead: Bead) -> Verdict:
        reasons: list[str] = []
        if bead.status != "open":
            reasons.append(f"status is {bead.status}")
        if bead.pinned:
            reasons.append("pinned")
        if bead.ephemeral:
            reasons.append("ephemeral")
        if bead.issue_type in EXCLUDED_TYPES:
            reasons.append(f"type {bead.issue_type} is never dispatched")
        if bead.defer_until is not None and bead.defer_until > self.now:
            reasons.append(f"deferred until {bead.defer_until.isoformat()}")
        for parent_id in bead.parents:
            parent = self.beads.get(parent_id)
            until = parent.defer_until if parent else None
            if until is not None and until > self.now:
                reasons.append(f"parent {parent_id} deferred until {until.isoformat()}")
        blocked = bead.id in self._blocked
        if blocked:
            own = self._blocking.get(bead.id) or []
            if own:
                reasons.extend(own)
            else:
                reasons.append(self._blocked[bead.id])
        return Verdict(bead, tuple(reasons), blocked)


def _cycle_members(beads: Mapping[str, Bead]) -> dict[str, str]:
    """bead id -> the cycle it is in (named by its members), over the links that can
    block between live beads: blocks, conditional-blocks, parent-child, and waits-for
    (to the spawner's children, which are what it waits on). Tarjan's
    strongly connected components, iteratively (a long parent chain is no recursion)."""
    live = {i for i, b in beads.items() if b.status not in DONE}
    children: dict[str, list[str]] = {}
    for bead in beads.values():
        for parent in bead.parents:
            children.setdefault(parent, []).append(bead.id)
    edges: dict[str, list[str]] = {}
    for i in sorted(live):
        out: list[str] = []
        for d in beads[i].deps:
            if d.type in BLOCKING_TYPES or d.type == PARENT:
                out.append(d.target)
            elif d.type == WAITS_FOR:  # it waits on the spawner's children, not on it
                out.extend(children.get(d.target, ()))
        edges[i] = [t for t in out if t in live]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    members: dict[str, str] = {}
    counter = 0
    for root in sorted(live):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, pos = work.pop()
            if pos == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = edges[node]
            if pos < len(succ):
                work.append((node, pos + 1))
                nxt = succ[pos]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:  # returning to the caller: fold our low into its
                caller = work[-1][0]
                low[caller] = min(low[caller], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    ring = sorted(component)
                    more = ", ..." if len(ring) > 4 else ""
                    text = f"{len(ring)} beads: {', '.join(ring[:4])}{more}"
                    for member in component:
                        members[member] = text
    return members


def evaluate(records: Iterable[Any], now: datetime | None = None) -> ReadySet:
    """The ready set of raw records (non-issues skipped). `now` defaults to the clock."""
    beads = []
    for record in records:
        try:
            beads.append(bead_from_record(record))
        except NotABead:
            continue
    return ReadySet(beads, now or datetime.now(UTC))
