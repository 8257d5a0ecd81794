"""The ledger's constants, errors and value types (public through `ipc.ledger`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from ipc.ledger import _semtimedop as sem
from ipc.ledger import _table as table
from ipc.ledger._table import RESOURCES

SEM_MUTEX, SEM_EVENTS, SEM_STAMP, SEM_BASE = 0, 1, 2, 3
NSEMS = SEM_BASE + len(RESOURCES)
DEFAULT_RAM_UNIT_MB = 64
DEFAULT_LANES = 128
DEFAULT_LANE_SLOTS = 8
MUTEX_TIMEOUT_S = 5.0  # the mutex guards a few memory writes; waiting longer means a bug


class LedgerError(Exception):
    """The ledger is unusable: missing, corrupt, removed, or its table is full."""


class LedgerMissing(LedgerError):
    """No ledger exists for this runtime dir (is the resource governor running?)."""


class LedgerRemoved(LedgerError):
    """The semaphore set was removed under us (the ledger was destroyed or re-created)."""


class NotHolder(LedgerError):
    """Only the process that acquired a ticket may release it (SEM_UNDO is per process)."""


class ResourceError(Exception):
    """A request could not be granted: `current` of `resource` against `limit`."""

    def __init__(self, resource: str, current: int, limit: int, message: str) -> None:
        super().__init__(message)
        self.resource, self.current, self.limit = resource, current, limit


class WouldBlock(ResourceError):
    """acquire_nowait: the resources are not free right now."""


class AcquireTimeout(ResourceError):
    """acquire: the resources did not become free before the deadline."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Capacities, validated once. RAM counts in `ram_unit_mb` units on the semaphore."""

    gpu_tickets: int = 0
    max_mutators: int = 0
    max_loops: int = 0
    max_workspaces: int = 0
    ram_budget_mb: int = 0
    min_free_ram_mb: int = 0
    ram_unit_mb: int = DEFAULT_RAM_UNIT_MB

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"limit {name} must be a non-negative int, got {value!r}")
        if self.ram_unit_mb < 1:
            raise ValueError("limit ram_unit_mb must be at least 1")
        for name, units in zip(RESOURCES, self.capacities(), strict=True):
            if units > sem.SEMVMX:
                raise ValueError(f"limit for {name} is {units} units, above {sem.SEMVMX}")

    def capacities(self) -> tuple[int, ...]:
        """Semaphore capacities in RESOURCES order."""
        ram_units = self.ram_budget_mb // self.ram_unit_mb
        return (self.gpu_tickets, self.max_mutators, self.max_loops, self.max_workspaces, ram_units)


class Ticket(NamedTuple):
    """What one acquire took. Holds no resources itself: release it through the ledger.

    (A NamedTuple, not a frozen dataclass: creating one is on the 5 µs hot path.)
    """

    slot: int
    generation: int
    pid: int
    counts: tuple[int, ...]  # per RESOURCES, RAM in units
    label: str
    offset: int  # of the slot in the table

    def amounts(self) -> dict[str, int]:
        return {name: n for name, n in zip(RESOURCES, self.counts, strict=True) if n}


def check_timeout(timeout: float | None, deadline: float | None) -> float:
    """Seconds left: exactly one of timeout= (relative) or deadline= (monotonic)."""
    if (timeout is None) == (deadline is None):
        raise TypeError("pass exactly one of timeout= or deadline=")
    left = deadline - time.monotonic() if deadline is not None else float(timeout)  # type: ignore[arg-type]
    if math.isnan(left):
        raise ValueError(f"timeout/deadline must be a number of seconds, got {left}")
    return left


def replace_limit(record: table.Record, limit: int) -> table.Record:
    return table.Record(
        record.kind, limit, record.exhausted, record.last_current, record.last_ts, record.last_pid
    )


def valid_header(buf: Any, path: Path) -> table.Header:
    try:
        header = table.read_header(buf)
        stamp = sem.getval(header.semid, SEM_STAMP)
    except table.TableFormatError as exc:
        raise LedgerError(f"{path}: {exc}") from None
    except sem.SemaphoreGone:
        raise LedgerMissing(f"{path}: its semaphore set no longer exists") from None
    if stamp != header.stamp:
        raise LedgerMissing(f"{path}: semaphore id {header.semid} now belongs to another set")
    return header


def check_free_ram() -> int:
    """Available RAM in MB: what can be used without swapping (fs-034).

    Read from /proc/meminfo's MemAvailable, the figure psutil reports too, at a third of
    psutil's cost (every slot request pays it). psutil where that cannot be read or is
    not to be trusted (see available_mb).
    """
    try:
        with open("/proc/meminfo", "rb", buffering=0) as f:
            mb = available_mb(f.read(8192))
    except OSError:
        mb = None
    return mb if mb is not None else int(psutil.virtual_memory().available // (1024 * 1024))


def available_mb(meminfo: bytes) -> int | None:
    """MemAvailable in MB from /proc/meminfo's text; None without the line, or when it
    exceeds MemTotal (as in some containers: psutil then works it out otherwise)."""
    try:
        available, total = (
            _meminfo_kb(meminfo, b"MemAvailable:"),
            _meminfo_kb(meminfo, b"MemTotal:"),
        )
    except (ValueError, IndexError):
        return None
    return available // 1024 if available <= total else None


def _meminfo_kb(data: bytes, key: bytes) -> int:
    start = data.index(key) + len(key)
    return int(data[start : data.index(b"\n", start)].split()[0])
