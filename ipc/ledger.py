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

Sets: [0] mutex guarding the table, [1] exhaustion events (the governor waits on it
and broadcasts ResourceExhausted), [2] stamp (tells our set from a recycled id),
[3..] one per resource in RESOURCES. RAM counts in units of `ram_unit_mb` MB, because
a semaphore holds at most 32767.

Public readers: `snapshot(runtime_dir) -> dict` reads without locking or destroying.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ipc import _ledger_table as table
from ipc import _semtimedop as sem
from ipc._ledger_snapshot import destroy, snapshot, snapshot_of
from ipc._ledger_table import EXHAUSTION_KINDS, RESOURCES, Record
from ipc._ledger_types import (
    DEFAULT_LANE_SLOTS,
    DEFAULT_LANES,
    MUTEX_TIMEOUT_S,
    NSEMS,
    SEM_BASE,
    SEM_EVENTS,
    SEM_MUTEX,
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
    check_timeout,
    replace_limit,
    valid_header,
)
from ipc.types import ProcessId

_SLOT, _SLOT_STATE = table.SLOT, table.SLOT_STATE


class TicketLedger:
    """One process's handle on the ledger. After a fork, open a fresh one in the child."""

    def __init__(self, path: Path, buf: Any, header: table.Header) -> None:
        self.path = path
        self._buf = buf
        self._header = header
        self.semid = header.semid
        self.ram_unit_mb = header.ram_unit_mb
        self._counts_cache: dict[tuple[tuple[str, int], ...], tuple[int, ...]] = {}
        self._ops: dict[tuple[int, bool], dict[tuple[int, ...], sem.Ops]] = {
            (sign, nowait): {} for sign in (-1, 1) for nowait in (True, False)
        }
        self._me: ProcessId | None = None
        self._free: list[tuple[int, int]] = []  # (slot, offset) in lanes this process owns
        self._lanes: list[int] = []
        self._lock_op = sem.make_ops([(SEM_MUTEX, -1, sem.SEM_UNDO)])
        self._unlock_op = sem.make_ops([(SEM_MUTEX, 1, sem.SEM_UNDO)])
        self._event_op = sem.make_ops([(SEM_EVENTS, 1, sem.IPC_NOWAIT)])
        self.stats = {"acquired": 0, "released": 0, "refused": 0, "timeouts": 0}

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, runtime_dir: str | os.PathLike[str]) -> TicketLedger:
        """Attach to the ledger the governor created; raises LedgerMissing."""
        path = table.table_path(runtime_dir)
        try:
            buf = table.map_file(path, writable=True)
        except FileNotFoundError:
            raise LedgerMissing(f"no ledger for {runtime_dir} (expected {path})") from None
        try:
            header = valid_header(buf, path)
        except LedgerError:
            buf.close()
            raise
        return cls(path, buf, header)

    @classmethod
    def create(
        cls,
        runtime_dir: str | os.PathLike[str],
        limits: Limits,
        *,
        nlanes: int = DEFAULT_LANES,
        lane_slots: int = DEFAULT_LANE_SLOTS,
    ) -> TicketLedger:
        """Create the ledger, or re-attach to a live one (a restarted governor).

        Re-attaching keeps every held ticket and moves each capacity to `limits`
        (see adjust_limits). Only a different layout (RAM unit, lane sizes) replaces
        the set, which turns the old holders' releases into no-ops.
        """
        path = table.table_path(runtime_dir)
        with contextlib.suppress(LedgerMissing):
            ledger = cls.open(runtime_dir)
            h = ledger._header
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

    def close(self) -> None:
        """Unmap. Tickets still held stay held until released or this process exits."""
        with contextlib.suppress(BufferError, ValueError):
            self._buf.close()

    def __enter__(self) -> TicketLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- acquiring and releasing ---------------------------------------------------

    def acquire(
        self,
        request: Mapping[str, int],
        *,
        label: str = "",
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Ticket:
        """Take every requested resource at once, waiting up to the timeout (math.inf: ever).

        `request` maps names in RESOURCES to counts ("ram" in MB, rounded up to units).
        Raises AcquireTimeout (a ResourceError naming the short resource), ResourceError
        when the request exceeds a limit outright, LedgerRemoved when the set is gone.
        A request that has to wait is reported to the governor as an exhaustion.
        """
        left = check_timeout(timeout, deadline)
        counts = self._counts(request)
        if sem.semop_nowait(self.semid, self._op(counts, -1, nowait=True)):
            return self._record(counts, label)
        name, current, limit = self._short_of(counts)
        self._refuse(name, current)
        if left <= 0:
            self.stats["timeouts"] += 1
            raise AcquireTimeout(name, current, limit, f"{name} exhausted: {current}/{limit}")
        try:
            sem.semop(self.semid, self._op(counts, -1, nowait=False), left)
        except sem.SemaphoreTimeout:
            self.stats["timeouts"] += 1
            name, current, limit = self._short_of(counts)
            raise AcquireTimeout(
                name, current, limit, f"timed out after {left:.3f}s waiting for {name}"
            ) from None
        except sem.SemaphoreGone as exc:
            raise LedgerRemoved(f"the ledger was removed while waiting: {exc}") from None
        return self._record(counts, label)

    def acquire_nowait(self, request: Mapping[str, int], *, label: str = "") -> Ticket:
        """Take the resources now or raise WouldBlock (and report the exhaustion)."""
        counts = self._counts(request)
        if sem.semop_nowait(self.semid, self._op(counts, -1, nowait=True)):
            return self._record(counts, label)
        name, current, limit = self._short_of(counts)
        self._refuse(name, current)
        raise WouldBlock(name, current, limit, f"{name} exhausted: {current}/{limit} in use")

    def release(self, ticket: Ticket) -> bool:
        """Give a ticket's resources back; False (and no effect) if already released.

        Never blocks. Raises NotHolder when called from another process than the one
        that acquired it (the kernel's undo record belongs to that process).
        """
        if ticket.pid != os.getpid():
            raise NotHolder(f"ticket of pid {ticket.pid} cannot be released by pid {os.getpid()}")
        offset = ticket.offset
        state, generation = _SLOT_STATE.unpack_from(self._buf, offset)
        if state != table.HELD or generation != ticket.generation:
            return False
        _SLOT_STATE.pack_into(self._buf, offset, table.FREE, generation)
        self._free.append((ticket.slot, offset))
        try:
            sem.semop_nowait(self.semid, self._op(ticket.counts, +1, nowait=True))
        except sem.SemaphoreGone:
            return False
        self.stats["released"] += 1
        return True

    # fs-031..035 by name; slots are refused at once unless a timeout is given
    def request_mutator_slot(self, *, label: str = "", timeout: float = 0.0) -> Ticket:
        self._check_free_ram()
        return self.acquire({"mutator": 1}, label=label, timeout=timeout)

    def request_loop_slot(self, *, label: str = "", timeout: float = 0.0) -> Ticket:
        self._check_free_ram()
        return self.acquire({"loop": 1}, label=label, timeout=timeout)

    def request_workspace_slot(self, *, label: str = "", timeout: float = 0.0) -> Ticket:
        self._check_free_ram()
        return self.acquire({"workspace": 1}, label=label, timeout=timeout)

    def request_gpu_ticket(
        self, *, label: str = "", timeout: float | None = None, deadline: float | None = None
    ) -> Ticket:
        """Blocks while all GPU tickets are out (fs-035), up to the timeout."""
        return self.acquire({"gpu": 1}, label=label, timeout=timeout, deadline=deadline)

    release_slot = release
    release_gpu_ticket = release

    @property
    def min_free_ram_mb(self) -> int:
        """The governor's threshold (kept in the free_ram record, so changes apply live)."""
        return table.read_record(self._buf, EXHAUSTION_KINDS.index("free_ram")).limit

    # -- the governor's side -------------------------------------------------------

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

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    # -- internals -------------------------------------------------------------------

    def _counts(self, request: Mapping[str, int]) -> tuple[int, ...]:
        key = tuple(request.items())
        counts = self._counts_cache.get(key)
        if counts is not None:
            return counts
        unknown = set(request) - set(RESOURCES)
        if unknown:
            raise ValueError(f"unknown resource(s) {sorted(unknown)}; known: {RESOURCES}")
        values = []
        for name in RESOURCES:
            n = request.get(name, 0)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"count for {name} must be a non-negative int, got {n!r}")
            values.append(-(-n // self.ram_unit_mb) if name == "ram" else n)
        if not any(values):
            raise ValueError("a request must ask for at least one unit of something")
        counts = self._counts_cache[key] = tuple(values)
        return counts

    def _op(self, counts: tuple[int, ...], sign: int, *, nowait: bool) -> sem.Ops:
        """The cached operation taking (sign -1) or giving back (+1) `counts`."""
        cache = self._ops[(sign, nowait)]
        ops = cache.get(counts)
        if ops is None:
            flag = sem.SEM_UNDO | (sem.IPC_NOWAIT if nowait else 0)
            triples = [(SEM_BASE + i, sign * n, flag) for i, n in enumerate(counts) if n]
            ops = cache[counts] = sem.make_ops(triples)
        return ops

    def _record(self, counts: tuple[int, ...], label: str) -> Ticket:
        """With the units taken: write the holder entry in one of our lanes."""
        me = self._identity()
        try:
            slot, offset = self._free.pop() if self._free else self._claim_lane()
        except BaseException:
            sem.semop_nowait(self.semid, self._op(counts, +1, nowait=True))
            raise
        buf = self._buf
        generation = (_SLOT_STATE.unpack_from(buf, offset)[1] + 1) & 0xFFFFFFFF
        _SLOT.pack_into(
            buf,
            offset,
            table.HELD,
            generation,
            me.pid,
            me.start_ticks,
            time.time(),
            *counts,
            label.encode()[:32] if label else b"",
        )
        self.stats["acquired"] += 1
        return Ticket(slot, generation, me.pid, counts, label, offset)

    def _claim_lane(self) -> tuple[int, int]:
        """Claim a lane nobody (alive) owns and return its first slot; under the mutex."""
        me = self._identity()
        h = self._header
        self._lock()
        try:
            lane = table.claim_lane(self._buf, h, pid=me.pid, ticks=me.start_ticks)
            if lane is None:
                table.sweep_dead_lanes(self._buf, h)
                lane = table.claim_lane(self._buf, h, pid=me.pid, ticks=me.start_ticks)
        finally:
            self._unlock()
        if lane is None:
            raise LedgerError(f"the ledger's pid table is full ({h.nlanes} lanes all owned)")
        self._lanes.append(lane)
        first = lane * h.lane_slots
        self._free.extend(
            (s, h.slot_offset(s)) for s in reversed(range(first, first + h.lane_slots))
        )
        return self._free.pop()  # the lowest slot first

    def _identity(self) -> ProcessId:
        me = self._me
        if me is None or me.pid != os.getpid():
            # first use, or we are a forked child: the parent's lanes are not ours
            me = self._me = ProcessId.current()
            self._free, self._lanes = [], []
        return me

    def _short_of(self, counts: tuple[int, ...]) -> tuple[str, int, int]:
        """The first resource that cannot cover `counts` now: (name, in use, limit).

        Raises ResourceError when a count exceeds its limit: no wait could satisfy it.
        """
        values = sem.getall(self.semid, NSEMS)
        fallback = None
        for i, n in enumerate(counts):
            if not n:
                continue
            limit = table.read_record(self._buf, i).limit
            if n > limit:
                raise ResourceError(
                    RESOURCES[i], n, limit, f"{RESOURCES[i]}: asked {n}, limit is {limit}"
                )
            free = values[SEM_BASE + i]
            fallback = fallback or (RESOURCES[i], limit - free, limit)
            if free < n:
                return RESOURCES[i], limit - free, limit
        assert fallback is not None  # _counts guarantees one non-zero count
        return fallback

    def _check_free_ram(self) -> None:
        minimum = self.min_free_ram_mb
        if minimum <= 0:
            return
        free = check_free_ram()
        if free < minimum:
            self._refuse("free_ram", free)
            raise ResourceError(
                "free_ram", free, minimum, f"free RAM {free} MB is below the minimum {minimum} MB"
            )

    def _refuse(self, kind: str, current: int) -> None:
        """Count a refusal in the shared record and wake the governor to broadcast it."""
        self.stats["refused"] += 1
        i = EXHAUSTION_KINDS.index(kind)
        self._lock()
        try:
            old = table.read_record(self._buf, i)
            table.write_record(
                self._buf,
                i,
                table.Record(kind, old.limit, old.exhausted + 1, current, time.time(), os.getpid()),
            )
        finally:
            self._unlock()
        try:
            sem.semop_nowait(self.semid, self._event_op)
        except OSError as exc:  # ERANGE: nobody drains the events; the count still says it
            if exc.errno != errno.ERANGE:
                raise

    def _lock(self) -> None:
        try:
            sem.semop(self.semid, self._lock_op, MUTEX_TIMEOUT_S)
        except sem.SemaphoreTimeout:
            raise LedgerError(f"ledger mutex not free after {MUTEX_TIMEOUT_S}s") from None
        except sem.SemaphoreGone as exc:
            raise LedgerRemoved(f"the ledger was removed: {exc}") from None

    def _unlock(self) -> None:
        with contextlib.suppress(sem.SemaphoreGone):
            sem.semop_nowait(self.semid, self._unlock_op)


__all__ = [
    "RESOURCES",
    "AcquireTimeout",
    "LedgerError",
    "LedgerMissing",
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
