"""The ledger as the resource governor sees it: create, resize, watch, sweep, remove.

Public through `ipc.ledger` as LedgerOwner, a TicketLedger with the owner's operations.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time

from ipc.ledger import _semtimedop as sem
from ipc.ledger import _table as table
from ipc.ledger._client import TicketLedger
from ipc.ledger._snapshot import snapshot_of
from ipc.ledger._table import EXHAUSTION_KINDS, RESOURCES
from ipc.ledger._types import (
    DEFAULT_LANE_SLOTS,
    DEFAULT_LANES,
    NSEMS,
    SEM_BASE,
    SEM_EVENTS,
    LedgerMissing,
    LedgerRemoved,
    Limits,
    replace_limit,
)


class LedgerOwner(TicketLedger):
    """The creating side. Any process may hold one, but normally only the governor does."""

    @classmethod
    def create(
        cls,
        runtime_dir: str | os.PathLike[str],
        limits: Limits,
        *,
        nlanes: int = DEFAULT_LANES,
        lane_slots: int = DEFAULT_LANE_SLOTS,
    ) -> LedgerOwner:
        """Create the ledger, or re-attach to a live one (a restarted governor).

        Re-attaching keeps every held ticket and moves each capacity to `limits`
        (see adjust_limits). Only a different layout (RAM unit, lane sizes) replaces
        the set, which turns the old holders' releases into no-ops.
        """
        path = table.table_path(runtime_dir)
        with contextlib.suppress(LedgerMissing):
            ledger = cls.open(runtime_dir)
            h = ledger.header
            if (h.ram_unit_mb, h.nlanes, h.lane_slots) == (limits.ram_unit_mb, nlanes, lane_slots):
                ledger.adjust_limits(limits)
                return ledger
            ledger.destroy()
        semid = sem.semget(sem.IPC_PRIVATE, NSEMS, sem.IPC_CREAT | 0o600)
        stamp = secrets.randbelow(sem.SEMVMX) + 1
        try:
            sem.setall(semid, [1, 0, stamp, *limits.capacities()])
            header = table.Header(
                semid, stamp, nlanes, lane_slots, limits.ram_unit_mb, os.getpid(), time.time()
            )
            record_limits = dict(zip(RESOURCES, limits.capacities(), strict=True))
            record_limits["free_ram"] = limits.min_free_ram_mb
            table.create_file(path, header, record_limits)
        except BaseException:
            sem.remove(semid)
            raise
        return cls.open(runtime_dir)

    def adjust_limits(self, limits: Limits) -> list[str]:
        """Move capacities to `limits` while tickets stay held.

        A decrease takes the units off the semaphore; when they are held right now it
        is not applied, and its resource is returned so the caller can retry later.
        """
        pending = []
        self._lock()
        try:
            for i, (name, new) in enumerate(zip(RESOURCES, limits.capacities(), strict=True)):
                old = table.read_record(self._buf, i)
                delta = new - old.limit
                if delta == 0:
                    continue
                ops = sem.make_ops([(SEM_BASE + i, delta, sem.IPC_NOWAIT)])
                if not sem.semop_nowait(self.semid, ops):
                    pending.append(name)
                    continue
                table.write_record(self._buf, i, replace_limit(old, new))
            free_ram = EXHAUSTION_KINDS.index("free_ram")
            old = table.read_record(self._buf, free_ram)
            table.write_record(self._buf, free_ram, replace_limit(old, limits.min_free_ram_mb))
        finally:
            self._unlock()
        return pending

    def wait_exhaustion(self, *, timeout: float) -> bool:
        """Block until some request hit a limit (True) or `timeout` passes (False)."""
        try:
            sem.semop(self.semid, sem.make_ops([(SEM_EVENTS, -1, 0)]), timeout)
        except sem.SemaphoreTimeout:
            return False
        except sem.SemaphoreGone as exc:
            raise LedgerRemoved(str(exc)) from None
        drain = sem.make_ops([(SEM_EVENTS, -1, sem.IPC_NOWAIT)])
        while sem.semop_nowait(self.semid, drain):
            pass
        return True

    def poke(self) -> None:
        """Wake a `wait_exhaustion` caller without recording anything (at shutdown)."""
        with contextlib.suppress(OSError):
            sem.semop_nowait(self.semid, self._event_op)

    def records(self) -> dict[str, table.Record]:
        """Exhaustion counts and the last exhaustion of each kind."""
        return {k: table.read_record(self._buf, i) for i, k in enumerate(EXHAUSTION_KINDS)}

    def sweep_stale(self) -> int:
        """Reclaim the lanes of holders that died; returns how many entries that freed.

        The kernel gave the units back when the holder died; this clears its entries.
        """
        self._lock()
        try:
            return table.sweep_dead_lanes(self._buf, self._header)
        finally:
            self._unlock()

    def live_holders(self) -> int:
        return sum(1 for h in snapshot_of(self.path)["holders"] if h["alive"])

    def destroy(self) -> None:
        """Remove the set and the table; waiters wake with LedgerRemoved."""
        sem.remove(self.semid)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()
