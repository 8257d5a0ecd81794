"""Small validated value types shared by signals and the ledger (seed fs-003..005).

- `GitHash`: a full 40-hex commit id, lower-cased; `GitHash.parse` rejects anything else.
- `Priority`: critical/high/medium/low with `to_string`/`from_string` (and beads' 0..4).
- `ProcessId`: an OS pid plus its kernel start time, so a recycled pid is never taken
  for the process that held it (`is_alive()` checks both).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum

_HEX40 = re.compile(r"[0-9a-f]{40}")


class InvalidValue(ValueError):
    """A value does not have the shape its type requires; the message names it."""


class GitHash(str):
    """A 40-character lower-case hex commit id. A `str`, so orjson writes it as one."""

    __slots__ = ()

    def __new__(cls, value: str) -> GitHash:
        if not isinstance(value, str):
            raise InvalidValue(f"git hash must be a string, got {type(value).__name__}")
        lowered = value.strip().lower()
        if not _HEX40.fullmatch(lowered):
            raise InvalidValue(f"git hash must be 40 hex characters, got {value!r:.60}")
        return super().__new__(cls, lowered)

    @classmethod
    def parse(cls, value: str) -> GitHash:
        """Validate `value`; raises InvalidValue naming what is wrong."""
        return cls(value)

    @property
    def short(self) -> str:
        return self[:12]


class Priority(Enum):
    """Task priority, highest first. Beads' numeric levels map 0->critical ... 3,4->low."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    def to_string(self) -> str:
        return self.value

    @classmethod
    def from_string(cls, text: str) -> Priority:
        """Accept a name in any case ("High") or a beads level ("P1", "1")."""
        if not isinstance(text, str):
            raise InvalidValue(f"priority must be a string, got {type(text).__name__}")
        key = text.strip().lower()
        for member in cls:
            if member.value == key:
                return member
        level = key[1:] if key.startswith("p") else key
        if level.isdigit():
            return cls.from_level(int(level))
        names = ", ".join(m.value for m in cls)
        raise InvalidValue(f"priority must be one of {names} or P0..P4, got {text!r:.40}")

    @classmethod
    def from_level(cls, level: int) -> Priority:
        """Beads' numeric priority: 0 is highest; 3 and 4 (backlog) are low."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 4:
            raise InvalidValue(f"priority level must be an int 0..4, got {level!r}")
        return (cls.CRITICAL, cls.HIGH, cls.MEDIUM, cls.LOW, cls.LOW)[level]

    @property
    def rank(self) -> int:
        """0 for critical ... 3 for low: sorts highest first."""
        return list(Priority).index(self)


def process_start_ticks(pid: int) -> int | None:
    """The kernel start time of `pid` in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@dataclass(frozen=True, slots=True)
class ProcessId:
    """An OS process, identified by pid and start time (pids are recycled)."""

    pid: int
    start_ticks: int

    @classmethod
    def from_pid(cls, pid: int) -> ProcessId:
        """Raises InvalidValue if `pid` is not a live process."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise InvalidValue(f"pid must be a positive int, got {pid!r}")
        ticks = process_start_ticks(pid)
        if ticks is None:
            raise InvalidValue(f"no live process with pid {pid}")
        return cls(pid, ticks)

    @classmethod
    def current(cls) -> ProcessId:
        return cls.from_pid(os.getpid())

    def to_pid(self) -> int:
        return self.pid

    def is_alive(self) -> bool:
        """True while the very process this id names runs (not a zombie, not a reuse)."""
        return process_start_ticks(self.pid) == self.start_ticks

    def __str__(self) -> str:
        return f"{self.pid}@{self.start_ticks}"
