"""The ledger's shared table: a file in /dev/shm, mmapped by every process that uses it.

Layout (little-endian, fixed offsets; version 1):

    header     magic, version, semid, stamp, nlanes, lane_slots, ram_unit_mb,
               creator_pid, created_ts
    records    one per kind in EXHAUSTION_KINDS: name, limit, exhausted count, and the
               last exhaustion's current value, time and pid (min_free_ram_mb is the
               free_ram record's limit)
    lanes      nlanes x (owner pid, owner start ticks, claimed_ts, then lane_slots
               holder entries: state, generation, pid, pid start ticks, acquired_ts,
               counts per resource, label)

A process claims a lane (under the ledger's mutex semaphore) and from then on is the
only writer of its lane's entries, so taking and returning a ticket needs no lock: one
semaphore operation and a few bytes written. Lanes of dead owners are reclaimed. Records
and lane ownership change only under the mutex. Readers (`factoryctl status`) map the
file read-only and never lock, so a reader can neither block nor destroy the ledger;
an entry read mid-update may be torn.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from ipc.types import process_start_ticks

RESOURCES = ("gpu", "mutator", "loop", "workspace", "ram")
EXHAUSTION_KINDS = (*RESOURCES, "free_ram")
MAGIC = b"FLEDGER\x01"
VERSION = 1
SHM_DIR = Path("/dev/shm")

HEADER = struct.Struct("<8sIiIIIIid")
RECORD = struct.Struct("<16sIQqdi")
SLOT = struct.Struct(f"<IIiQd{len(RESOURCES)}I32s")
SLOT_STATE = struct.Struct("<II")  # state, generation: the prefix of SLOT
LANE = struct.Struct("<iQd")  # owner pid, owner start ticks, claimed_ts
FREE, HELD = 0, 1
RECORDS_AT = HEADER.size
LANES_AT = RECORDS_AT + RECORD.size * len(EXHAUSTION_KINDS)


def table_path(runtime_dir: str | os.PathLike[str]) -> Path:
    """The table file of the ledger that belongs to `runtime_dir` (one per daemon)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(runtime_dir))).hexdigest()[:16]
    return SHM_DIR / f"factory-ledger-{digest}"


def lane_size(lane_slots: int) -> int:
    return LANE.size + SLOT.size * lane_slots


def table_size(nlanes: int, lane_slots: int) -> int:
    return LANES_AT + lane_size(lane_slots) * nlanes


@dataclass(frozen=True, slots=True)
class Header:
    semid: int
    stamp: int
    nlanes: int
    lane_slots: int
    ram_unit_mb: int
    creator_pid: int
    created_ts: float

    @property
    def nslots(self) -> int:
        return self.nlanes * self.lane_slots

    def slot_offset(self, slot: int) -> int:
        """Byte offset of global slot number `slot` (lane = slot // lane_slots)."""
        lane, k = divmod(slot, self.lane_slots)
        return LANES_AT + lane * lane_size(self.lane_slots) + LANE.size + k * SLOT.size

    def lane_offset(self, lane: int) -> int:
        return LANES_AT + lane * lane_size(self.lane_slots)


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    limit: int
    exhausted: int
    last_current: int
    last_ts: float
    last_pid: int


@dataclass(frozen=True, slots=True)
class Slot:
    index: int
    state: int
    generation: int
    pid: int
    start_ticks: int
    acquired_ts: float
    counts: tuple[int, ...]
    label: str


class TableFormatError(Exception):
    """The file is not a ledger table of this version."""


def read_header(buf: mmap.mmap) -> Header:
    if len(buf) < LANES_AT:
        raise TableFormatError(f"table is {len(buf)} bytes, shorter than its header")
    magic, version, semid, stamp, nlanes, lane_slots, unit, creator, created = HEADER.unpack_from(
        buf, 0
    )
    if magic != MAGIC or version != VERSION:
        raise TableFormatError(f"not a version-{VERSION} ledger table (magic {magic!r})")
    if len(buf) < table_size(nlanes, lane_slots):
        raise TableFormatError(f"table is truncated: {len(buf)} bytes for {nlanes} lanes")
    return Header(semid, stamp, nlanes, lane_slots, unit, creator, created)


def write_header(buf: mmap.mmap, header: Header) -> None:
    HEADER.pack_into(
        buf,
        0,
        MAGIC,
        VERSION,
        header.semid,
        header.stamp,
        header.nlanes,
        header.lane_slots,
        header.ram_unit_mb,
        header.creator_pid,
        header.created_ts,
    )


def read_lane(buf: mmap.mmap, header: Header, lane: int) -> tuple[int, int, float]:
    """(owner pid, owner start ticks, claimed_ts); pid 0 means unclaimed."""
    return LANE.unpack_from(buf, header.lane_offset(lane))


def write_lane(
    buf: mmap.mmap, header: Header, lane: int, *, pid: int, ticks: int, ts: float
) -> None:
    LANE.pack_into(buf, header.lane_offset(lane), pid, ticks, ts)


def read_record(buf: mmap.mmap, i: int) -> Record:
    name, limit, count, current, ts, pid = RECORD.unpack_from(buf, RECORDS_AT + i * RECORD.size)
    return Record(name.rstrip(b"\0").decode(), limit, count, current, ts, pid)


def write_record(buf: mmap.mmap, i: int, record: Record) -> None:
    RECORD.pack_into(
        buf,
        RECORDS_AT + i * RECORD.size,
        record.kind.encode(),
        record.limit,
        record.exhausted,
        record.last_current,
        record.last_ts,
        record.last_pid,
    )


def read_slot_state(buf: mmap.mmap, offset: int) -> tuple[int, int]:
    return SLOT_STATE.unpack_from(buf, offset)


def read_slot(buf: mmap.mmap, i: int, offset: int) -> Slot:
    state, gen, pid, ticks, ts, *rest = SLOT.unpack_from(buf, offset)
    counts, label = tuple(rest[:-1]), rest[-1]
    return Slot(
        i, state, gen, pid, ticks, ts, counts, label.rstrip(b"\0").decode("utf-8", "replace")
    )


def write_slot(
    buf: mmap.mmap,
    offset: int,
    *,
    state: int,
    generation: int,
    pid: int,
    start_ticks: int,
    acquired_ts: float,
    counts: tuple[int, ...],
    label: bytes,
) -> None:
    SLOT.pack_into(buf, offset, state, generation, pid, start_ticks, acquired_ts, *counts, label)


def free_slot(buf: mmap.mmap, offset: int, generation: int) -> None:
    """Mark a slot free, keeping its generation so an old ticket can't match a new holder."""
    SLOT_STATE.pack_into(buf, offset, FREE, generation)


def claim_lane(buf: mmap.mmap, header: Header, *, pid: int, ticks: int) -> int | None:
    """Give the first lane without a live owner to (pid, ticks), its slots all free.

    Call with the ledger's mutex held. Returns the lane, or None when all are owned.
    """
    for lane in range(header.nlanes):
        owner, owner_ticks, _ = read_lane(buf, header, lane)
        if owner and process_start_ticks(owner) == owner_ticks:
            continue
        _free_lane_slots(buf, header, lane)
        write_lane(buf, header, lane, pid=pid, ticks=ticks, ts=time.time())
        return lane
    return None


def sweep_dead_lanes(buf: mmap.mmap, header: Header) -> int:
    """Free the lanes of dead owners (mutex held); returns how many held entries that cleared."""
    freed = 0
    for lane in range(header.nlanes):
        owner, owner_ticks, _ = read_lane(buf, header, lane)
        if owner and process_start_ticks(owner) != owner_ticks:
            freed += _free_lane_slots(buf, header, lane)
            write_lane(buf, header, lane, pid=0, ticks=0, ts=0.0)
    return freed


def _free_lane_slots(buf: mmap.mmap, header: Header, lane: int) -> int:
    freed = 0
    first = lane * header.lane_slots
    for slot in range(first, first + header.lane_slots):
        offset = header.slot_offset(slot)
        state, generation = read_slot_state(buf, offset)
        freed += state == HELD
        free_slot(buf, offset, generation)
    return freed


def create_file(path: Path, header: Header, limits: dict[str, int]) -> None:
    """Write a fresh table next to `path` and rename it into place (readers never see half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = table_size(header.nlanes, header.lane_slots)
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as buf:
            write_header(buf, header)
            for i, kind in enumerate(EXHAUSTION_KINDS):
                write_record(buf, i, Record(kind, limits[kind], 0, 0, 0.0, 0))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def map_file(path: Path, *, writable: bool) -> mmap.mmap:
    """Map the table; a read-only map is what status readers use."""
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        return mmap.mmap(fd, size, access=access)
    finally:
        os.close(fd)
