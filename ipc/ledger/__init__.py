"""The resource ledger: GPU tickets, mutator/loop/workspace slots and RAM reservations.

Each resource is one counting semaphore of a SysV set, taken with SEM_UNDO through
`semtimedop`: a request for several resources is one atomic operation, a wait has a
real timeout, and when a holder dies (even by SIGKILL) the kernel gives its units back.
Beside the set, a table in /dev/shm records who holds what (pid, start time, label) for
`factoryctl status`; entries of dead holders show as stale until their lane is reclaimed
(`sweep_stale`, or when a lane is needed). Taking or returning a ticket is one semaphore
operation plus a write to the caller's own lane of the table: no lock.

    ledger = TicketLedger.open(runtime_dir)            # the governor created it
    ticket = ledger.acquire({"gpu": 1}, timeout=30.0)  # or acquire_nowait -> WouldBlock
    ...
    ledger.release(ticket)                             # a second release is a no-op

The governor holds a LedgerOwner (a TicketLedger that can also create, resize, wait for
exhaustion, sweep and destroy). Modules: _ledger_client (TicketLedger), _ledger_owner,
_ledger_table (the shared table's layout), _ledger_snapshot (readers), _ledger_types.

Sets: [0] mutex guarding the table, [1] exhaustion events (the governor waits on it
and broadcasts ResourceExhausted), [2] stamp (tells our set from a recycled id),
[3..] one per resource in RESOURCES. RAM counts in units of `ram_unit_mb` MB, because
a semaphore holds at most 32767.

Public readers: `snapshot(runtime_dir) -> dict` reads without locking or destroying.
"""

from __future__ import annotations

from ipc.ledger._client import TicketLedger
from ipc.ledger._owner import LedgerOwner
from ipc.ledger._snapshot import destroy, snapshot
from ipc.ledger._table import EXHAUSTION_KINDS, RESOURCES, Record
from ipc.ledger._types import (
    AcquireTimeout,
    LedgerError,
    LedgerMissing,
    LedgerRemoved,
    Limits,
    NotHolder,
    ResourceError,
    Ticket,
    WouldBlock,
    check_free_ram,
)

__all__ = [
    "EXHAUSTION_KINDS",
    "RESOURCES",
    "AcquireTimeout",
    "LedgerError",
    "LedgerMissing",
    "LedgerOwner",
    "LedgerRemoved",
    "Limits",
    "NotHolder",
    "Record",
    "ResourceError",
    "Ticket",
    "TicketLedger",
    "WouldBlock",
    "check_free_ram",
    "destroy",
    "snapshot",
]
