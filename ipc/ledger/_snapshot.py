"""Reading the ledger for operators: `snapshot` never locks, modifies or removes it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ipc.ledger import _semtimedop as sem
from ipc.ledger import _table as table
from ipc.ledger._table import EXHAUSTION_KINDS, RESOURCES
from ipc.ledger._types import NSEMS, SEM_BASE, SEM_STAMP, LedgerMissing, valid_header
from ipc.types import process_start_ticks


def snapshot(runtime_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ledger of `runtime_dir` as plain data, for `factoryctl status`.

    Never locks and never modifies or removes anything. Raises LedgerMissing when no
    ledger exists. Shape:
        {"path", "semid", "creator_pid", "created_ts", "min_free_ram_mb", "ram_unit_mb",
         "resources": {name: {"limit", "in_use", "available", "waiting", "exhausted",
                              "last_exhausted": {"current", "ts", "pid"} | None}},
         "holders": [{"slot", "pid", "alive", "label", "acquired_ts", "resources"}],
         "stale": int}
    ("ram" limit/in_use/available are in MB; "free_ram" has limit = min_free_ram_mb.)
    """
    return snapshot_of(table.table_path(runtime_dir))


def snapshot_of(path: Path) -> dict[str, Any]:
    try:
        buf = table.map_file(path, writable=False)
    except FileNotFoundError:
        raise LedgerMissing(f"no ledger at {path}") from None
    with buf:
        header = valid_header(buf, path)
        values = sem.getall(header.semid, NSEMS)
        unit = header.ram_unit_mb
        resources: dict[str, Any] = {}
        for i, kind in enumerate(EXHAUSTION_KINDS):
            rec = table.read_record(buf, i)
            last = None
            if rec.exhausted:
                last = {"current": rec.last_current, "ts": rec.last_ts, "pid": rec.last_pid}
            entry: dict[str, Any] = {"limit": rec.limit, "exhausted": rec.exhausted}
            if i < len(RESOURCES):
                free = values[SEM_BASE + i]
                scale = unit if kind == "ram" else 1
                entry.update(
                    limit=rec.limit * scale,
                    in_use=(rec.limit - free) * scale,
                    available=free * scale,
                    waiting=sem.getncnt(header.semid, SEM_BASE + i),
                )
            entry["last_exhausted"] = last
            resources[kind] = entry
        holders = []
        for lane in range(header.nlanes):
            if not table.read_lane(buf, header, lane)[0]:
                continue
            first = lane * header.lane_slots
            for i in range(first, first + header.lane_slots):
                offset = header.slot_offset(i)
                if table.read_slot_state(buf, offset)[0] == table.HELD:
                    holders.append(_holder(table.read_slot(buf, i, offset), unit))
        min_free = table.read_record(buf, EXHAUSTION_KINDS.index("free_ram")).limit
    return {
        "path": str(path),
        "semid": header.semid,
        "creator_pid": header.creator_pid,
        "created_ts": header.created_ts,
        "min_free_ram_mb": min_free,
        "ram_unit_mb": unit,
        "resources": resources,
        "holders": holders,
        "stale": sum(1 for h in holders if not h["alive"]),
    }


def _holder(slot: table.Slot, unit: int) -> dict[str, Any]:
    amounts = {
        name: n * (unit if name == "ram" else 1)
        for name, n in zip(RESOURCES, slot.counts, strict=True)
        if n
    }
    return {
        "slot": slot.index,
        "pid": slot.pid,
        "alive": process_start_ticks(slot.pid) == slot.start_ticks,
        "label": slot.label,
        "acquired_ts": slot.acquired_ts,
        "resources": amounts,
    }


def destroy(runtime_dir: str | os.PathLike[str]) -> bool:
    """Remove the ledger of `runtime_dir` if there is one (tests, clean shutdown)."""
    path = table.table_path(runtime_dir)
    try:
        buf = table.map_file(path, writable=False)
    except FileNotFoundError:
        return False
    with buf, contextlib.suppress(table.TableFormatError):
        header = table.read_header(buf)
        with contextlib.suppress(sem.SemaphoreGone):
            if sem.getval(header.semid, SEM_STAMP) == header.stamp:
                sem.remove(header.semid)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True
