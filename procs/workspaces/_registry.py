"""create / destroy / list workspaces under one root, with records and orphan cleanup.

The library face of the workspace manager: tests call it directly, the service
(procs/workspaces/service.py) calls it for each control request. Nothing here blocks
longer than `timeout_s` per command a strategy runs (cp, git); snapshot and overlay make
no subprocess at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from procs.workspaces._claims import ClaimsUnknown, LoopClaims
from procs.workspaces._model import (
    STRATEGIES,
    BadRequest,
    StrategyChoice,
    Workspace,
    WorkspaceError,
    WorkspaceNotFound,
    check_inside,
    check_slug,
    check_source,
    check_strategy,
)
from procs.workspaces._records import (
    WorkspaceRecord,
    WorkspaceRecords,
    owner_alive,
    process_start_ticks,
)
from procs.workspaces._slots import WorkspaceSlots
from procs.workspaces._snapshot_pool import SnapshotPool
from procs.workspaces._strategies import (
    AUTO_ORDER,
    STRATEGY_IMPLS,
    Placement,
    choose,
    remove_leftovers,
    unmount_inside,
)

OrphanPolicy = Literal["remove", "keep"]
_ID = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class OrphanReport:
    """What reaping did with one workspace: removed, kept, cleaned (an interrupted create
    or destroy), dropped (its directory vanished, e.g. with a RAM disk), detached (its
    owner died but its loop may resume: kept for the loop to adopt), or failed."""

    workspace: Workspace
    action: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, **self.workspace.to_dict()}


@dataclass
class _Counters:
    created: int = 0
    destroyed: int = 0
    failed: int = 0
    last_create_ms: float = 0.0
    by_strategy: dict[str, int] = field(default_factory=dict)


class WorkspaceRegistry:
    """Workspaces of golden masters, placed under `root`, recorded in `db_path`.

    Args:
        root: where workspaces go (for snapshot/reflink, on the golden master's filesystem).
        db_path: the SQLite records file (WAL), normally <state_dir>/workspaces.sqlite3.
        scratch: where overlay upper/work layers go (tmpfs, e.g. /dev/shm/...).
        default_strategy: used when a caller names none ("auto" or a strategy name).
        orphans: what reaping does with a workspace whose owner died: remove or keep.
        timeout_s: the most one strategy command (cp, git, jj) may run.
        snapshot_pool: snapshots per golden master taken ahead of time (see
            _snapshot_pool); 0 takes each snapshot on request. `refill_pools()` tops up.
        slots: the governor's workspace slots (one per workspace, taken before a create
            touches the disk, given back when its record goes); None: unlimited.
            The registry closes it.
        claims: which loops hold a claim (the beads service's): a workspace made for a
            loop (`owner_loop`) whose owner died is `detached`, not reaped, while its
            loop holds one or the claims cannot be read; None: reaped like any other.
    """

    def __init__(
        self,
        root: Path,
        db_path: Path,
        *,
        scratch: Path,
        default_strategy: str = "auto",
        orphans: OrphanPolicy = "remove",
        timeout_s: float = 300.0,
        auto_order: tuple[str, ...] = AUTO_ORDER,
        snapshot_pool: int = 0,
        slots: WorkspaceSlots | None = None,
        claims: LoopClaims | None = None,
    ) -> None:
        if orphans not in ("remove", "keep"):
            raise BadRequest(f"orphan policy must be 'remove' or 'keep', got {orphans!r}")
        unknown = [name for name in auto_order if name not in STRATEGIES]
        if unknown or not auto_order:
            raise BadRequest(
                f"auto order {','.join(auto_order)!r} must list strategies from "
                f"{', '.join(STRATEGIES)}"
            )
        root.mkdir(parents=True, exist_ok=True)
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root = root.resolve()
        self.scratch = scratch.resolve()
        self.default_strategy = check_strategy(default_strategy)
        self.orphans: OrphanPolicy = orphans
        self.timeout_s = timeout_s
        self.auto_order = auto_order
        self.records = WorkspaceRecords(db_path)
        self.pool = SnapshotPool(self.root, snapshot_pool)
        self.slots = slots or WorkspaceSlots(None)
        self.claims = claims
        self._counters = _Counters()

    # -- create ------------------------------------------------------------------------

    def choose_strategy(self, source: str | Path, strategy: str | None = None) -> StrategyChoice:
        """Which strategy a create would use for `source`, and why (no side effects)."""
        asked = check_strategy(strategy or self.default_strategy)
        src = check_source(source, self.root)
        return choose(asked, src, self.root, self.scratch, self.auto_order)

    def create_workspace(
        self,
        slug: str,
        source: str | Path,
        strategy: str | None = None,
        *,
        owner_pid: int | None = None,
        owner_loop: str | None = None,
    ) -> Workspace:
        """Make an isolated working copy of `source` (a git repo) and record it.

        Raises BadRequest (slug, strategy name, source, owner), StrategyUnavailable (why,
        and what would work), SlotsExhausted (no workspace slot in the governor's ledger)
        or StrategyFailed; a failed create leaves nothing behind and holds no slot.
        """
        return self.create_workspace_explained(
            slug, source, strategy, owner_pid=owner_pid, owner_loop=owner_loop
        )[0]

    def create_workspace_explained(
        self,
        slug: str,
        source: str | Path,
        strategy: str | None = None,
        *,
        owner_pid: int | None = None,
        owner_loop: str | None = None,
    ) -> tuple[Workspace, StrategyChoice]:
        """create_workspace, also returning which strategy was used and why."""
        started = time.perf_counter()
        slug = check_slug(slug)
        if owner_loop is not None and (
            not isinstance(owner_loop, str) or not 0 < len(owner_loop) <= 200
        ):
            raise BadRequest(f"owner_loop must be a loop id (1-200 chars), got {owner_loop!r:.80}")
        owner = os.getpid() if owner_pid is None else owner_pid
        if not isinstance(owner, int) or isinstance(owner, bool) or owner <= 0:
            raise BadRequest(f"owner_pid must be a positive integer, got {owner!r}")
        owner_start = process_start_ticks(owner)
        if owner_start is None:
            raise BadRequest(f"owner pid {owner} does not run")
        asked = check_strategy(strategy or self.default_strategy)
        src = check_source(source, self.root)
        choice = choose(asked, src, self.root, self.scratch, self.auto_order)
        id_ = secrets.token_hex(6)
        path = check_inside(self.root / f"{slug}-{id_}", self.root)
        rec = WorkspaceRecord(
            id=id_,
            slug=slug,
            path=path,
            scratch=self.scratch / path.name,
            strategy=choice.strategy,
            source=src,
            owner_pid=owner,
            owner_start=owner_start,
            created_at=time.time(),
            state="creating",
            owner_loop=owner_loop,
        )
        self.slots.take(id_)  # refused here, before any record or disk change
        try:
            self.records.insert(rec)
        except BaseException:
            self.slots.give_back(id_)
            raise
        impl = STRATEGY_IMPLS[choice.strategy]
        placement = Placement(src, rec.path, rec.scratch)
        try:
            if not (choice.strategy == "snapshot" and self.pool.take(src, rec.path)):
                impl.create(placement, timeout_s=self.timeout_s)
        except BaseException:
            self._counters.failed += 1
            with contextlib.suppress(WorkspaceError, OSError):
                impl.destroy(placement, timeout_s=self.timeout_s)
            remove_leftovers(rec.path)
            self.records.delete(id_)
            self.slots.give_back(id_)
            raise
        self.records.set_state(id_, "ready")
        c = self._counters
        c.created += 1
        c.by_strategy[choice.strategy] = c.by_strategy.get(choice.strategy, 0) + 1
        c.last_create_ms = (time.perf_counter() - started) * 1000
        return dataclasses.replace(rec.workspace(), state="ready"), choice

    # -- destroy / list ----------------------------------------------------------------

    def _record(self, workspace_id: object) -> WorkspaceRecord:
        if not isinstance(workspace_id, str) or not _ID.fullmatch(workspace_id):
            raise BadRequest(f"bad workspace id {workspace_id!r}: expected 12 hex digits")
        rec = self.records.get(workspace_id)
        if rec is None:
            raise WorkspaceNotFound(f"no workspace with id {workspace_id}")
        return rec

    def destroy_workspace(self, workspace_id: str) -> Workspace:
        """Remove the workspace and its record; returns what was removed.

        Raises BadRequest, WorkspaceNotFound, or StrategyFailed (record kept, retry later).
        """
        rec = self._record(workspace_id)
        self._destroy(rec)
        return rec.workspace()

    def _destroy(self, rec: WorkspaceRecord) -> None:
        check_inside(rec.path, self.root)  # a record must never point outside the root
        check_inside(rec.scratch, self.scratch)
        self.records.set_state(rec.id, "destroying")
        unmount_inside(rec.path)
        STRATEGY_IMPLS[rec.strategy].destroy(
            Placement(rec.source, rec.path, rec.scratch), timeout_s=self.timeout_s
        )
        self.records.delete(rec.id)
        self.slots.give_back(rec.id)
        self._counters.destroyed += 1

    def adopt_workspace(self, workspace_id: str, owner_pid: int) -> Workspace:
        """Hand a kept workspace to `owner_pid` (a resumed loop's owner): it is `ready`
        again and reaped when that owner dies. Adopting one's own is a no-op.

        Raises BadRequest (bad id or pid), WorkspaceNotFound, or WorkspaceOwned (its
        owner still runs: a workspace is never taken from a live owner).
        """
        rec = self._record(workspace_id)
        if not isinstance(owner_pid, int) or isinstance(owner_pid, bool) or owner_pid <= 0:
            raise BadRequest(f"owner_pid must be a positive integer, got {owner_pid!r}")
        start = process_start_ticks(owner_pid)
        if start is None:
            raise BadRequest(f"owner pid {owner_pid} does not run")
        if rec.state in ("creating", "destroying"):
            raise WorkspaceOwned(f"workspace {rec.id} is being {rec.state[:-3]}ed")
        same = rec.owner_pid == owner_pid and rec.owner_start in (None, start)
        if not same and rec.state != "detached" and owner_alive(rec.owner_pid, rec.owner_start):
            raise WorkspaceOwned(
                f"workspace {rec.id} belongs to pid {rec.owner_pid}, which still runs"
            )
        self.records.set_owner(rec.id, owner_pid, start)
        return dataclasses.replace(rec.workspace(), owner_pid=owner_pid, state="ready")

    def get_workspace(self, workspace_id: str) -> Workspace:
        return self._record(workspace_id).workspace()

    def list_workspaces(self) -> list[Workspace]:
        """Every recorded workspace, oldest first (states: creating, ready, orphaned...)."""
        return [rec.workspace() for rec in self.records.all()]

    # -- orphans -----------------------------------------------------------------------

    def reap_orphans(self, policy: OrphanPolicy | None = None) -> list[OrphanReport]:
        """Deal with workspaces whose owner died, and with interrupted creates/destroys.

        Called when the manager (re)starts and whenever an owner is seen to die. Returns
        one report per workspace acted on; workspaces of live owners are left alone.
        """
        policy = policy or self.orphans
        reports = []
        claims = _ClaimsOnce(self.claims)
        for rec in self.records.all():
            report = self._reap_one(rec, policy, claims)
            if report is not None:
                reports.append(report)
        return reports

    def reap_if_orphaned(self, workspace_id: str) -> OrphanReport | None:
        rec = self.records.get(workspace_id)
        return None if rec is None else self._reap_one(rec, self.orphans, _ClaimsOnce(self.claims))

    def detached(self) -> list[Workspace]:
        """Workspaces kept for a loop that may resume (reaping asks about them again)."""
        return [w for w in self.list_workspaces() if w.state == "detached"]

    def _reap_one(
        self, rec: WorkspaceRecord, policy: OrphanPolicy, claims: _ClaimsOnce
    ) -> OrphanReport | None:
        ws = rec.workspace()
        owner_gone = f"owner pid {rec.owner_pid} died"
        if rec.state in ("creating", "destroying"):
            action, reason = "cleaned", f"a {rec.state} step was interrupted"
        elif rec.state == "orphaned" or (
            rec.state == "ready" and owner_alive(rec.owner_pid, rec.owner_start)
        ):
            return None
        elif not rec.path.exists():
            self.records.delete(rec.id)
            self.slots.give_back(rec.id)
            return OrphanReport(ws, "dropped", f"owner died and {rec.path} is gone already")
        elif rec.owner_loop is not None and (wanted := claims.wanted(rec.owner_loop)):
            if rec.state == "detached":
                return None
            self.records.set_state(rec.id, "detached")
            return OrphanReport(ws, "detached", f"{owner_gone}; {wanted}: kept for it to adopt")
        elif policy == "keep":
            self.records.set_state(rec.id, "orphaned")
            return OrphanReport(ws, "kept", f"{owner_gone}; policy keeps it")
        else:
            action, reason = "removed", owner_gone
            if rec.owner_loop is not None and self.claims is not None:
                reason += f" and loop {rec.owner_loop} holds no claim"
        try:
            self._destroy(rec)
        except (WorkspaceError, OSError) as exc:
            self.records.set_state(rec.id, "orphaned")
            return OrphanReport(ws, "failed", f"{reason}; removing failed: {exc}")
        return OrphanReport(ws, action, reason)

    def sync_slots(self) -> dict[str, Any]:
        """Hold one workspace slot per recorded workspace (after a restart: the kernel
        returned the dead manager's). Returns the slot statistics; "uncovered" lists
        kept workspaces that found no free slot (reported, never deleted)."""
        return self.slots.sync({rec.id for rec in self.records.all()})

    def refill_pools(self) -> int:
        """Top up the snapshot pools of the golden masters seen so far (synchronous; a few
        ms per snapshot made). Returns how many snapshots were made."""
        return self.pool.refill() if self.pool.size > 0 else 0

    def statistics(self) -> dict[str, Any]:
        c = self._counters
        live = self.list_workspaces()
        return {
            "workspaces": len(live),
            "orphaned": sum(1 for w in live if w.state == "orphaned"),
            "detached": sum(1 for w in live if w.state == "detached"),
            "created": c.created,
            "destroyed": c.destroyed,
            "failed": c.failed,
            "last_create_ms": round(c.last_create_ms, 3),
            "created_by_strategy": dict(c.by_strategy),
            **self.pool.statistics(),
        }

    def close(self) -> None:
        self.records.close()
        self.slots.close()


class WorkspaceOwned(WorkspaceError):
    """An adoption of a workspace whose owner still runs (or that is mid-create)."""

    kind = "owned"


class _ClaimsOnce:
    """The claims, read at most once per reaping pass (one call for many workspaces)."""

    def __init__(self, source: LoopClaims | None) -> None:
        self.source = source
        self._loops: frozenset[str] | None = None
        self._unknown = ""

    def wanted(self, loop_id: str) -> str:
        """Why the loop's workspace is kept ("" when it is not: no claim, or no source)."""
        if self.source is None:
            return ""
        if self._loops is None and not self._unknown:
            try:
                self._loops = self.source.claimed_loops()
            except ClaimsUnknown as exc:
                self._unknown = str(exc)
        if self._unknown:
            return f"loop {loop_id} may resume (claims unknown: {self._unknown})"
        assert self._loops is not None
        return f"loop {loop_id} holds a claim" if loop_id in self._loops else ""
