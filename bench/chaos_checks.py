"""The chaos soak's invariants, each a count of what broke it (0: it held).

Read from the system of record once the factory has settled and stopped cleanly: the
beads file, golden's history (each commit checked out and its suite run), the loops
database, the ledger, /proc (processes, mounts) and /sys/block (loop devices). Each
check returns (count, examples) so the report can show what broke, not only how often.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ipc import ledger
from ipc.loop_records import LoopReader, loops_path

Found = tuple[int, list[str]]
GIT_TIMEOUT_S = 60
SUITE_TIMEOUT_S = 120
_BLANK = re.compile(r"/\S+|\b\d+\b")  # paths and numbers, in failure reasons


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S, check=True)  # fmt: skip
    return done.stdout


def _found(items: Iterable[str]) -> Found:
    listed = list(items)
    return len(listed), listed[:5]


def read_beads(path: Path) -> dict[str, dict[str, Any]]:
    beads: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                beads[record["id"]] = record
    return beads


def landed_modules(golden: Path, start: str) -> dict[int, list[str]]:
    """Chaos module K -> the golden commits that added its test (more than one: landed
    twice)."""
    added: dict[int, list[str]] = {}
    out = git(golden, "log", "--format=%H", "--diff-filter=A", "--name-only", f"{start}..main")
    commit = ""
    for line in out.splitlines():
        if len(line) == 40 and "/" not in line:
            commit = line
        elif line.startswith("tests/test_chaos_") and line.endswith(".py"):
            added.setdefault(int(line[len("tests/test_chaos_") : -3]), []).append(commit)
    return added


def beads_lost(written: dict[str, int], beads: dict[str, dict[str, Any]],
               landed: dict[int, list[str]]) -> Found:  # fmt: skip
    """A bead written but gone from the file, or closed with no commit of it on golden."""
    lost = [f"{b}: missing from the beads file" for b in written if b not in beads]
    lost += [f"{b}: closed but its module is not on golden" for b, k in written.items()
             if beads.get(b, {}).get("status") == "closed" and k not in landed]  # fmt: skip
    return _found(lost)


def beads_claimed_twice(written: dict[str, int], landed: dict[int, list[str]],
                        live_twice: list[str]) -> Found:  # fmt: skip
    """Two live loops for one bead at once (seen while running), or a bead landed twice."""
    twice = [f"{b}: landed {len(landed[k])} times" for b, k in written.items()
             if len(landed.get(k, [])) > 1]  # fmt: skip
    return _found([*live_twice, *twice])


def beads_unsettled(written: dict[str, int], beads: dict[str, dict[str, Any]],
                    landed: dict[int, list[str]]) -> Found:  # fmt: skip
    """Not done (closed, on golden), back in the queue (open, unassigned) or blocked with
    a reason: a bead left claimed, or whose commit landed but which is not closed."""
    bad = []
    for bead_id, k in written.items():
        record = beads.get(bead_id)
        if record is None:
            continue  # counted as lost
        status = record.get("status")
        if status == "closed":
            continue
        if k in landed:
            bad.append(f"{bead_id}: landed on golden but {status}")
        elif status == "open" and record.get("assignee"):
            bad.append(f"{bead_id}: open but assigned to {record['assignee']}")
        elif status == "blocked" and not _reason(record):
            bad.append(f"{bead_id}: blocked with no reason")
        elif status not in ("open", "blocked"):
            bad.append(f"{bead_id}: {status} (assignee {record.get('assignee')})")
    return _found(bad)


def _reason(record: dict[str, Any]) -> str:
    comments = record.get("comments") or []
    texts = [str(c.get("text", "")) for c in comments if isinstance(c, dict)]
    return " ".join([*texts, str(record.get("notes") or ""), str(record.get("close_reason")
                                                                   or "")]).strip()  # fmt: skip


def golden_red(golden: Path, start: str, test_command: list[str], skip: set[str]
               ) -> tuple[Found, int]:  # fmt: skip
    """Each golden commit since `start` but those in `skip` checked out (a detached
    worktree) and its suite run: the red ones, and how many were checked."""
    commits = [c for c in git(golden, "rev-list", "--reverse", f"{start}..main").split()
               if c not in skip]  # fmt: skip
    red = []
    with tempfile.TemporaryDirectory(prefix="chaos-golden-check-") as tmp:
        tree = Path(tmp) / "tree"
        git(golden, "worktree", "add", "-q", "--detach", str(tree), start)
        try:
            for commit in commits:
                git(tree, "checkout", "-q", "--detach", commit)
                git(tree, "clean", "-qfdx")
                done = subprocess.run(test_command, cwd=tree, capture_output=True, text=True,
                                      timeout=SUITE_TIMEOUT_S, check=False)  # fmt: skip
                if done.returncode != 0:
                    red.append(f"{commit[:10]}: exit {done.returncode}: "
                               f"{done.stdout.strip().splitlines()[-1:]}")  # fmt: skip
        finally:
            git(golden, "worktree", "remove", "--force", str(tree))
    return _found(red), len(commits)


def loops_unended(state: Path) -> tuple[Found, dict[str, int], dict[str, int]]:
    """Every loop ended: complete, or failed with a reason, in its own record or, for a
    loop the dispatcher gave up resuming (its record stays in the phase it died in), in
    the dispatcher's. Returns the bad ones, the loops by final phase ("given up" for
    those) and every failed dispatch by reason (paths and numbers blanked; a loop that
    never started has no record of its own)."""
    path = loops_path(state)
    settled = dispatcher_settled(state)
    reasons: dict[str, int] = {}
    for outcome, reason in settled.values():
        if outcome == "failed":
            why = _BLANK.sub("#", reason)[:170]
            reasons[why] = reasons.get(why, 0) + 1
    if not path.exists():
        return (0, []), {}, reasons
    bad: list[str] = []
    phases: dict[str, int] = {}
    with LoopReader(path) as reader:
        for loop in reader.summaries():
            phase, reason = str(loop.get("phase")), str(loop.get("reason") or "")
            if phase not in ("complete", "failed") and loop["loop_id"] in settled:
                outcome, reason = settled[loop["loop_id"]]  # it died; the dispatcher settled it
                phase = "given up" if outcome == "failed" else "landed after it died"
            phases[phase] = phases.get(phase, 0) + 1
            if phase in ("failed", "given up") and not reason:
                bad.append(f"{loop['loop_id']}: {phase} with no reason")
            elif phase not in ("complete", "failed", "given up", "landed after it died"):
                bad.append(f"{loop['loop_id']}: left in {phase}")
    return _found(bad), phases, reasons


def dispatcher_settled(state: Path) -> dict[str, tuple[str, str]]:
    """Loop id -> (outcome, reason), for the loops the dispatcher settled as failed or
    closed (its records)."""
    path = state / "dispatcher.sqlite3"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT loop_id, outcome, reason FROM dispatches WHERE state = "
                          "'ended' AND outcome IN ('failed', 'closed')").fetchall()  # fmt: skip
    finally:
        db.close()
    return {str(loop_id): (str(outcome), str(reason)) for loop_id, outcome, reason in rows}


def ledger_leaks(snapshot: dict[str, Any] | None) -> Found:
    """With no loop or mutator alive: any GPU ticket, loop or mutator slot or RAM
    reservation in use; and for every resource, units in use that no live holder holds
    (a dead holder's entry is only stale: the kernel gave its units back, SEM_UNDO, and
    the governor sweeps the entry)."""
    if snapshot is None:
        return 0, []
    if "error" in snapshot:
        return 1, [str(snapshot["error"])]
    resources = snapshot.get("resources") or {}
    leaks = [f"{name}: {entry.get('in_use')} in use with no loop or mutator alive"
             for name, entry in resources.items()
             if name in ("gpu", "loop", "mutator", "ram") and entry.get("in_use")]  # fmt: skip
    for name, entry in resources.items():
        held = sum(int(h.get("resources", {}).get(name, 0)) for h in snapshot.get("holders") or []
                   if h.get("alive"))  # fmt: skip
        if isinstance(entry.get("in_use"), int) and entry["in_use"] > held:
            leaks.append(f"{name}: {entry['in_use']} in use, live holders hold {held}")
    return _found(leaks)


def read_ledger(runtime: Path) -> dict[str, Any] | None:
    try:
        return ledger.snapshot(runtime)
    except ledger.LedgerMissing:
        return None
    except (ledger.LedgerError, OSError, ValueError) as exc:
        return {"error": f"cannot read the ledger: {exc}"}


def mounts_under(roots: Iterable[Path]) -> Found:
    prefixes = [str(r.resolve()) for r in roots]
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p + "/") for p in prefixes):
                found.append(point)
    return _found(found)


def loop_devices_on(roots: Iterable[Path]) -> Found:
    prefixes = [str(r.resolve()) for r in roots]
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            name = backing.read_text().strip()
            if any(name.startswith(p + "/") or name.startswith(p) for p in prefixes):
                found.append(f"/dev/{backing.parent.parent.name} -> {name}")
    return _found(found)


def worktrees_left(golden: Path) -> Found:
    """Git worktrees of golden other than itself (a loop's workspace never removed)."""
    out = git(golden, "worktree", "list", "--porcelain")
    trees = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]
    return _found(t for t in trees if Path(t).resolve() != golden.resolve())


def workspaces_left(listed: dict[str, Any] | None) -> Found:
    """Workspaces the manager still lists once every loop ended."""
    if listed is None:
        return 0, []
    return _found(f"{w.get('slug')} ({w.get('path')})" for w in listed.get("workspaces") or [])


def processes_left(pids: Iterable[int]) -> Found:
    return _found(f"pid {pid}: {_cmdline(pid)}" for pid in pids)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120]


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def environ_marked(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (ours: the whole tree's)."""
    found = []
    needle = marker.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in Path(entry.path, "environ").read_bytes() and is_alive(int(entry.name)):
                found.append(int(entry.name))
    return found
