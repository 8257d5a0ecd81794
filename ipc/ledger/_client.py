"""The ledger as its users see it: open, acquire, release (public through `ipc.ledger`)."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from ipc.ledger import _semtimedop as sem
from ipc.ledger import _table as table
from ipc.ledger._table import EXHAUSTION_KINDS, RESOURCES
from ipc.ledger._types import (
    MUTEX_TIMEOUT_S,
    NSEMS,
    SEM_BASE,
    SEM_EVENTS,
    SEM_MUTEX,
    AcquireTimeout,
    LedgerError,
    LedgerMissing,
    LedgerRemoved,
    NotHolder,
    ResourceError,
    Ticket,
    WouldBlock,
    check_free_ram,
    check_timeout,
    valid_header,
)
from ipc.types import ProcessId

_SLOT, _SLOT_STATE = table.SLOT, table.SLOT_STATE
_MAX_PLANS = 512  # cached request plans a handle keeps (about 1 KB each)

# Bumped in every forked child, so a handle notices the fork without calling getpid()
# on each ticket operation (a child owns none of its parent's lanes or tickets).
_FORKS = [0]
os.register_at_fork(after_in_child=lambda: _FORKS.__setitem__(0, _FORKS[0] + 1))


class TicketLedger:
    """One process's handle on the ledger. After a fork, open a fresh one in the child."""

    def __init__(self, path: Path, buf: Any, header: table.Header) -> None:
        self.path = path
        self._buf = buf
        self._header = header
        self.semid = header.semid
        self.ram_unit_mb = header.ram_unit_mb
        self._plans: dict[tuple[Any, ...], tuple[tuple[int, ...], sem.Ops, sem.Ops]] = {}
        self._give: dict[tuple[int, ...], sem.Ops] = {}
        self._forks = -1
        self._me: ProcessId | None = None
        self._free: list[tuple[int, int]] = []  # (slot, offset) in lanes this process owns
        self._lanes: list[int] = []
        self._lock_op = sem.make_ops([(SEM_MUTEX, -1, sem.SEM_UNDO)])
        self._unlock_op = sem.make_ops([(SEM_MUTEX, 1, sem.SEM_UNDO)])
        self._event_op = sem.make_ops([(SEM_EVENTS, 1, sem.IPC_NOWAIT)])
        self.stats = {"acquired": 0, "released": 0, "refused": 0, "timeouts": 0}

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, runtime_dir: str | os.PathLike[str]) -> Self:
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

    def close(self) -> None:
        """Unmap. Tickets still held stay held until released or this process exits."""
        with contextlib.suppress(BufferError, ValueError):
            self._buf.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def header(self) -> table.Header:
        """The table's header as read at open: the set, its stamp, the layout (RAM unit,
        lanes, slots a lane) and who created it when."""
        return self._header

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
        counts, take_nowait, take = self._plan(request)
        if self._take_now(take_nowait):
            return self._record(counts, label)
        name, current, limit = self._short_of(counts)
        self._refuse(name, current)
        if left <= 0:
            self.stats["timeouts"] += 1
            raise AcquireTimeout(name, current, limit, f"{name} exhausted: {current}/{limit}")
        try:
            sem.semop(self.semid, take, left)
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
        counts, take_nowait, _ = self._plan(request)
        if self._take_now(take_nowait):
            return self._record(counts, label)
        name, current, limit = self._short_of(counts)
        self._refuse(name, current)
        raise WouldBlock(name, current, limit, f"{name} exhausted: {current}/{limit} in use")

    def release(self, ticket: Ticket) -> bool:
        """Give a ticket's resources back; False (and no effect) if already released.

        Never blocks. Raises NotHolder when called from another process than the one
        that acquired it (the kernel's undo record belongs to that process).
        """
        if ticket.pid != self._identity().pid:
            raise NotHolder(f"ticket of pid {ticket.pid} cannot be released by pid {os.getpid()}")
        offset = ticket.offset
        state, generation = _SLOT_STATE.unpack_from(self._buf, offset)
        if state != table.HELD or generation != ticket.generation:
            return False
        _SLOT_STATE.pack_into(self._buf, offset, table.FREE, generation)
        self._free.append((ticket.slot, offset))
        give = self._give.get(ticket.counts)
        if give is None:  # acquired through another handle of this process
            give = self._give[ticket.counts] = self._op(ticket.counts, +1, True)
        try:
            sem.semop_nowait(self.semid, give)
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

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    # -- internals -------------------------------------------------------------------

    def _plan(self, request: Mapping[str, int]) -> tuple[tuple[int, ...], sem.Ops, sem.Ops]:
        """(counts, take without waiting, take waiting) for `request`, cached.

        A hit needs every count to be an int: 1.0 and True equal 1 as dict keys, and
        must be refused as they are on a miss.
        """
        try:
            key = tuple(request.items())
            plan = self._plans.get(key)
        except (AttributeError, TypeError):  # no mapping, or an unhashable count
            plan = key = None
        if plan is not None:
            for _, n in key:  # type: ignore[union-attr]
                if type(n) is not int:
                    plan = None
                    break
        if plan is None:
            if not isinstance(request, Mapping):
                raise TypeError(f"a request maps resource names to counts, got {request!r:.80}")
            counts = self._counts(request)
            plan = (counts, self._op(counts, -1, True), self._op(counts, -1, False))
            if key is not None:
                if len(self._plans) >= _MAX_PLANS:  # many different amounts: start over
                    self._plans.clear()
                self._plans[key] = plan
            self._give[counts] = self._op(counts, +1, True)
        return plan

    def _counts(self, request: Mapping[str, int]) -> tuple[int, ...]:
        unknown = set(request) - set(RESOURCES)
        if unknown:
            raise ValueError(f"unknown resource(s) {sorted(unknown)}; known: {RESOURCES}")
        values = []
        for i, name in enumerate(RESOURCES):
            n = request.get(name, 0)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"count for {name} must be a non-negative int, got {n!r}")
            value = -(-n // self.ram_unit_mb) if name == "ram" else n
            if value > sem.SEMVMX:  # sem_op is 16 bits: a larger count would wrap around
                limit = table.read_record(self._buf, i).limit
                raise ResourceError(name, value, limit, f"{name}: asked {value}, limit is {limit}")
            values.append(value)
        if not any(values):
            raise ValueError("a request must ask for at least one unit of something")
        return tuple(values)

    @staticmethod
    def _op(counts: tuple[int, ...], sign: int, nowait: bool) -> sem.Ops:
        """The operation taking (sign -1) or giving back (+1) `counts`, with SEM_UNDO."""
        flag = sem.SEM_UNDO | (sem.IPC_NOWAIT if nowait else 0)
        return sem.make_ops([(SEM_BASE + i, sign * n, flag) for i, n in enumerate(counts) if n])

    def _record(self, counts: tuple[int, ...], label: str) -> Ticket:
        """With the units taken: write the holder entry in one of our lanes."""
        me = self._identity()
        try:
            try:  # one pop, not `if free: pop()`: a thread sharing this handle may take the last
                slot, offset = self._free.pop()
            except IndexError:
                slot, offset = self._claim_lane()
        except BaseException:
            with contextlib.suppress(sem.SemaphoreGone):  # the set went meanwhile: the
                sem.semop_nowait(self.semid, self._give[counts])  # error below says so
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
        if me is None or self._forks != _FORKS[0]:
            # first use, or we are a forked child: the parent's lanes are not ours
            me = self._me = ProcessId.current()
            self._forks = _FORKS[0]
            self._free, self._lanes = [], []
        return me

    def _take_now(self, ops: sem.Ops) -> bool:
        """semop without waiting; a removed set is LedgerRemoved, as everywhere here."""
        try:
            return sem.semop_nowait(self.semid, ops)
        except sem.SemaphoreGone as exc:
            raise LedgerRemoved(f"the ledger was removed: {exc}") from None

    def _short_of(self, counts: tuple[int, ...]) -> tuple[str, int, int]:
        """The first resource that cannot cover `counts` now: (name, in use, limit).

        Raises ResourceError when a count exceeds its limit: no wait could satisfy it.
        """
        try:
            values = sem.getall(self.semid, NSEMS)
        except sem.SemaphoreGone as exc:
            raise LedgerRemoved(f"the ledger was removed: {exc}") from None
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
