"""Workspace slots from the resource governor's ledger: one ticket per workspace on disk.

The manager process takes a workspace slot before it makes a workspace and gives it back
when the workspace is destroyed or reaped, so the governor's `max_workspaces` holds for
every workspace the manager keeps. Tickets are taken with SEM_UNDO by the manager itself:
when it dies the kernel returns them all, and the restarted manager calls `sync` with the
workspaces it keeps to take them again. If there are more kept workspaces than slots, the
ones left without a slot are reported (never deleted) and creates are refused until
enough workspaces are destroyed.

Without a ledger (the governor is not running) there is no limit and `statistics()` says
so. A ledger that appears later, or one re-created under a new semaphore set, is attached
at the next request and the known workspaces are counted into it then.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from ipc import ledger
from ipc.ledger import LedgerError, LedgerMissing, ResourceError, Ticket, TicketLedger
from procs.workspaces._model import WorkspaceError

RESOURCE = "workspace"
_ONE = {RESOURCE: 1}
_GONE_ERRNOS = (errno.EINVAL, errno.EIDRM)  # semop on a removed semaphore set


class SlotError(WorkspaceError):
    """The ledger failed in a way that is not a refusal (its pid table is full, ...)."""

    kind = "failed"


class SlotsExhausted(SlotError):
    """No workspace slot is free: `current` of `resource` in use against `limit`.

    The wording follows the ledger's ResourceError ("workspace exhausted: 2/2 in use").
    """

    kind = "exhausted"

    def __init__(self, resource: str, current: int, limit: int, message: str) -> None:
        super().__init__(message)
        self.resource, self.current, self.limit = resource, current, limit


def _label(workspace_id: str) -> str:
    return f"workspace {workspace_id}"  # 22 bytes: fits the table's 32-byte label


def _gone(exc: BaseException) -> bool:
    """Whether `exc` says the ledger's semaphore set no longer exists."""
    if isinstance(exc, ledger.LedgerRemoved | LedgerMissing):
        return True
    return isinstance(exc, OSError) and exc.errno in _GONE_ERRNOS


def refusal(exc: ResourceError, waited_s: float) -> SlotsExhausted:
    """The create refusal for a ledger refusal: names the resource, its use and limit."""
    if exc.resource != RESOURCE:  # free RAM below the governor's minimum
        message = f"{exc}; no workspace was created"
    elif exc.limit == 0:
        message = "workspace exhausted: max_workspaces is 0; no workspace was created"
    else:
        waited = f" after waiting {waited_s:g} s" if waited_s > 0 else ""
        message = (
            f"workspace exhausted: {exc.current}/{exc.limit} in use{waited}; no workspace "
            "was created (destroy one, or raise max_workspaces)"
        )
    return SlotsExhausted(exc.resource, exc.current, exc.limit, message)


class WorkspaceSlots:
    """The manager's workspace tickets in the ledger of `runtime_dir`, by workspace id.

    Args:
        runtime_dir: where the governor's ledger is looked for; None: never a ledger.
        timeout_s: how long `take` waits for a slot (0: refuse at once). The manager
            serves one request at a time and normally holds every workspace slot itself,
            so a wait only helps when another process holds some or the limit is raised.
    Not thread-safe; use it from the process that made it (tickets belong to it).
    """

    def __init__(self, runtime_dir: Path | None, *, timeout_s: float = 0.0) -> None:
        if not timeout_s >= 0 or timeout_s == float("inf"):
            raise ValueError(f"slot timeout must be a finite number of seconds >= 0: {timeout_s}")
        self.runtime_dir = runtime_dir
        self.timeout_s = timeout_s
        self.note = "no ledger: unlimited" if runtime_dir else "no runtime dir: unlimited"
        self._ledger: TicketLedger | None = None
        self._tickets: dict[str, Ticket] = {}
        self._known: set[str] = set()  # every workspace on disk, with a ticket or not
        self.stats = {"taken": 0, "given_back": 0, "refused": 0, "attached": 0}

    # -- the manager's calls ---------------------------------------------------------

    def take(self, workspace_id: str) -> None:
        """Take a slot for a workspace about to be made: call before any disk change.

        Blocks up to `timeout_s`. Raises SlotsExhausted (nothing taken) when no slot is
        free, free RAM is below the governor's minimum, or kept workspaces are over the
        limit already. Without a ledger it only remembers the id.
        """
        for attempt in range(2):  # a set re-created under us gets one more try
            if self._ensure() is None:
                break
            try:
                self._take(workspace_id)
                break
            except (LedgerError, OSError) as exc:
                if not _gone(exc) or attempt:
                    raise SlotError(f"taking a workspace slot failed: {exc}") from exc
                self._detach(exc)
        self._known.add(workspace_id)

    def give_back(self, workspace_id: str) -> None:
        """Return the slot of a workspace that is gone from disk; unknown ids are a no-op.

        Never blocks. A freed slot goes first to a kept workspace still without one.
        """
        self._known.discard(workspace_id)
        ticket = self._tickets.pop(workspace_id, None)
        if ticket is None or self._ledger is None:
            return
        try:
            if self._ledger.release(ticket):
                self.stats["given_back"] += 1
            if self.uncovered():
                self._cover_or_detach()
        except (LedgerError, OSError) as exc:
            if not _gone(exc):
                raise
            self._detach(exc)

    def sync(self, workspace_ids: set[str]) -> dict[str, Any]:
        """Hold one slot per workspace in `workspace_ids` (all the manager keeps), no more.

        Called at (re)start: the kernel returned a dead manager's tickets. Never waits;
        returns statistics(), whose "uncovered" lists the workspaces left without a slot.
        """
        for id_ in set(self._known) - workspace_ids:
            self.give_back(id_)
        self._known = set(workspace_ids)
        attached = self._ledger is not None
        if self._ensure() is not None and attached:
            self._cover_or_detach()
        return self.statistics()

    def uncovered(self) -> list[str]:
        """Workspaces kept on disk that hold no slot while a ledger is attached."""
        if self._ledger is None:
            return []
        return sorted(self._known - self._tickets.keys())

    def statistics(self) -> dict[str, Any]:
        """Slots in use / limit (from the ledger, every holder counted) and what we hold."""
        usage = self._usage()
        out: dict[str, Any] = {
            "ledger": str(self._ledger.path) if self._ledger else None,
            "limit": usage[1] if usage else None,
            "in_use": usage[0] if usage else None,
            "held": len(self._tickets),
            "uncovered": self.uncovered(),
            "timeout_s": self.timeout_s,
            **self.stats,
        }
        if usage is None:
            out["summary"] = self.note
            return out
        summary = f"{usage[0]}/{usage[1]} in use"
        if out["uncovered"]:
            n = len(out["uncovered"])
            summary += f"; over the limit: {n} kept workspace(s) hold no slot"
        out["summary"] = summary
        return out

    def close(self) -> None:
        """Unmap the ledger. Held tickets stay held until this process exits."""
        if self._ledger is not None:
            self._ledger.close()

    # -- internals -------------------------------------------------------------------

    def _ensure(self) -> TicketLedger | None:
        """The attached ledger, attaching one that exists now (and counting the known
        workspaces into it); None without a ledger."""
        if self._ledger is not None or self.runtime_dir is None:
            return self._ledger
        try:
            self._ledger = TicketLedger.open(self.runtime_dir)
        except LedgerMissing:
            self.note = "no ledger: unlimited"
            return None
        except LedgerError as exc:
            self.note = f"ledger unusable ({exc}): unlimited"
            return None
        self.stats["attached"] += 1
        self.note = ""
        self._cover_or_detach()
        return self._ledger

    def _detach(self, why: BaseException) -> None:
        """Drop a ledger whose set is gone; its tickets went with it."""
        if self._ledger is not None:
            self._ledger.close()
        self._ledger = None
        self._tickets.clear()
        self.note = f"ledger gone ({why}): unlimited"

    def _take(self, workspace_id: str) -> None:
        led = self._ledger
        assert led is not None
        if self.uncovered():  # the limit may have been raised, or a holder gone
            failure = self._cover()
            if failure is not None:
                raise failure  # take() names it (or detaches a ledger that is gone)
        if left := self.uncovered():
            in_use, limit = self._usage() or (len(self._tickets), len(self._tickets))
            self.stats["refused"] += 1
            raise SlotsExhausted(
                RESOURCE,
                in_use,
                limit,
                f"workspace over the limit: {len(left)} kept workspace(s) hold no slot "
                f"({in_use}/{limit} in use); destroy {len(left)} before creating another",
            )
        try:
            ticket = led.request_workspace_slot(label=_label(workspace_id), timeout=self.timeout_s)
        except ResourceError as exc:
            self.stats["refused"] += 1
            raise refusal(exc, self.timeout_s) from None
        self._tickets[workspace_id] = ticket
        self.stats["taken"] += 1

    def _cover(self) -> LedgerError | OSError | None:
        """Give kept workspaces without a slot one each while slots are free (no wait).

        Never raises: returns the ledger failure that stopped it (the set gone, its pid
        table full, ...), None otherwise. The ones left without a slot are what
        `uncovered` lists.
        """
        led = self._ledger
        assert led is not None
        for id_ in sorted(self._known - self._tickets.keys()):
            try:
                self._tickets[id_] = led.acquire_nowait(_ONE, label=_label(id_))
            except ResourceError:
                return None
            except (LedgerError, OSError) as exc:
                return exc
            self.stats["taken"] += 1
        return None

    def _cover_or_detach(self) -> None:
        """_cover where a failure is no caller's business: a ledger gone is detached."""
        failure = self._cover()
        if failure is not None and _gone(failure):
            self._detach(failure)

    def _usage(self) -> tuple[int, int] | None:
        """(in use, limit) of workspace slots, or None without a ledger. Notices a ledger
        removed or re-created since we attached, and re-attaches."""
        for _ in range(2):
            if self._ensure() is None or self.runtime_dir is None:
                return None
            try:
                snap = ledger.snapshot(self.runtime_dir)
            except LedgerError as exc:
                self._detach(exc)
                continue
            if snap["semid"] != self._ledger.semid:  # type: ignore[union-attr]
                self._detach(LedgerError(f"re-created as set {snap['semid']}"))
                continue
            entry = snap["resources"][RESOURCE]
            return entry["in_use"], entry["limit"]
        return None
