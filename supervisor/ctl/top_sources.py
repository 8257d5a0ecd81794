"""What `factoryctl top` shows, gathered once: one `Source` per panel, never an exception.

Each panel's data comes from the view that already answers it (factoryctl status,
loops, queue, golden, signals): a control call to factoryd or a service, bounded by
`call_timeout_s`, or a read-only SQLite read (ipc/loop_records.py, ipc/journal.py),
bounded by the reader's busy timeout. A source that fails is a `Source` with `error`
set (the reason in words), so a dead or slow service shows as such in its panel and
never takes the view down. `gather` blocks at most about len(CALLS) x call_timeout_s
plus the two database reads.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc import control, paths

SIGNAL_TAIL = 8  # the last signals kept for the tail panel
LOOPS_SHOWN = 12  # the newest loops kept for the loops panel
SWARM_SUPERVISORS = ("mutators", "swarm")  # a supervisor whose children are the swarm


@dataclass(frozen=True)
class Source:
    """One panel's data (`data`), or why it has none (`error`, a short sentence)."""

    data: Any = None
    error: str | None = None
    down: bool = False  # nothing listens: the process is gone (not merely slow)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame shows, taken at `taken_at` (wall clock, seconds)."""

    taken_at: float
    factoryd: Source  # factoryd's `status` reply: daemon, tree, resources
    loops: Source  # loop summaries (ipc.loop_records) with `tokens`, newest last
    queue: Source  # merge_queue's `queue` reply
    golden: Source  # golden's `status` reply
    signals: Source  # list of (ts, type, source, fields) tuples, oldest first
    extra: dict[str, Source] = field(default_factory=dict)

    @property
    def factoryd_gone(self) -> bool:
        return self.factoryd.down


def call_source(runtime_dir: Path, endpoint: str, command: str, timeout_s: float) -> Source:
    """One control call as a Source: the reply, or the reason there is none."""
    socket_path = paths.control_socket(runtime_dir, endpoint)
    try:
        return Source(control.call(socket_path, command, {}, timeout=timeout_s))
    except control.DaemonNotRunning:
        return Source(error=f"{endpoint} is not running (nothing listens on {socket_path})",
                      down=True)  # fmt: skip
    except control.ControlTimeout:
        return Source(error=f"{endpoint}: no answer within {timeout_s:g}s")
    except control.RemoteError as exc:
        return Source(error=f"{endpoint}: {exc}")
    except (control.ControlError, OSError) as exc:
        return Source(error=f"{endpoint}: {type(exc).__name__}: {exc}")


def loops_source(state_dir: Path, now: float) -> Source:
    from ipc import loop_records  # noqa: PLC0415 - only top and loops need it

    try:
        with loop_records.LoopReader(loop_records.loops_path(state_dir)) as reader:
            return Source(reader.summaries(now=now)[-LOOPS_SHOWN:])
    except loop_records.LoopRecordsError as exc:
        return Source(error=str(exc))
    except sqlite3.Error as exc:
        return Source(error=f"loops database: {exc}")


def with_tokens(loops: Source, runtime_dir: Path, call_timeout_s: float) -> Source:
    """The loops, each with `tokens`: what the model gateway counted for its bead (every
    attempt and role; `usage`, one call per bead bounded by `call_timeout_s`), None
    where it cannot say. A gateway that is not running is asked nothing more."""
    if not loops.ok:
        return loops
    socket_path = paths.control_socket(runtime_dir, "model_gateway")
    counted: dict[str, int | None] = {}
    gone = False
    rows = []
    for loop in loops.data:
        bead = str(loop.get("bead"))
        if bead not in counted and not gone:
            try:
                usage = control.call(socket_path, "usage", {"bead": bead}, timeout=call_timeout_s)
                used = usage.get("used_tokens") if isinstance(usage, dict) else None
                counted[bead] = used if isinstance(used, int) else None
            except control.DaemonNotRunning:
                gone = True
            except (control.ControlError, OSError):
                counted[bead] = None
        rows.append({**loop, "tokens": counted.get(bead)})
    return Source(rows)


def signals_source(state_dir: Path) -> Source:
    from ipc import journal  # noqa: PLC0415 - the signal codec is slow to import

    try:
        with journal.JournalReader(journal.journal_path(state_dir)) as reader:
            entries = reader.read(last=SIGNAL_TAIL)
    except journal.JournalError as exc:
        return Source(error=str(exc))
    except (sqlite3.Error, ValueError) as exc:
        return Source(error=f"signal journal: {exc}")
    return Source([(e.ts, e.type, e.source, e.fields()) for e in entries])


def gather(runtime_dir: Path, state_dir: Path, *, call_timeout_s: float) -> Snapshot:
    """Take one snapshot; every call bounded by `call_timeout_s`, no exception escapes
    for a source that is down, slow or malformed."""
    now = time.time()
    return Snapshot(
        taken_at=now,
        factoryd=call_source(runtime_dir, "factoryd", "status", call_timeout_s),
        loops=with_tokens(loops_source(state_dir, now), runtime_dir, call_timeout_s),
        queue=call_source(runtime_dir, "merge_queue", "queue", call_timeout_s),
        golden=call_source(runtime_dir, "golden", "status", call_timeout_s),
        signals=signals_source(state_dir),
    )


def swarm_of(tree: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The children of the tree's swarm supervisor (SWARM_SUPERVISORS), or None when the
    tree has none."""
    if not isinstance(tree, dict):
        return None
    if tree.get("type") == "supervisor" and tree.get("id") in SWARM_SUPERVISORS:
        return list(tree.get("children") or [])
    for child in tree.get("children") or []:
        found = swarm_of(child)
        if found is not None:
            return found
    return None
