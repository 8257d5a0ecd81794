"""The dispatcher's witnesses and hands, each asked over its owner's interface:

    BeadsPeer     the beads service's control socket: ready, list (live claims), claim,
                  close, fail, release
    FactorydPeer  factoryd's control socket: status (the `loops` supervisor's children,
                  by the --loop-id they were started with), start (a new loop child)
    LoopRecords   loops.sqlite3, read-only (ipc.loop_records' schema)
    free_loop_slots(runtime, live, max_loops)  the ledger's free loop slots, never waiting

Every call is bounded by its timeout. What cannot be asked raises PeerError (kind:
unreachable, timeout, store_error, refused, ...): the round that asked stops there and is
retried with backoff; an error is never read as "no work" and never closes a bead.
`Conflict` (beads: another loop holds it) and `Stale` (beads: not our live claim) are
answers, not failures.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ipc import control, ledger, loop_records, paths
from procs.dispatcher.policy import LiveClaim, LoopView, Process

BEADS = "beads"
_LOOP_ID_ARG = re.compile(r"--loop-id, ([A-Za-z0-9][A-Za-z0-9._:@-]*)")
_BEAD_ARG = re.compile(r"--bead, ([^,)\s]+)")


class PeerError(Exception):
    """A peer could not answer; `peer` names it, `kind` says how it failed."""

    def __init__(self, peer: str, kind: str, message: str) -> None:
        super().__init__(f"{peer}: {kind}: {message}")
        self.peer = peer
        self.kind = kind


class Conflict(PeerError):
    """beads: another loop holds the bead, or the store's compare-and-swap failed."""


class Stale(PeerError):
    """beads: the claim named is not the live one (it ended, or another loop holds it)."""


class StartRefused(PeerError):
    """factoryd: the loop child did not start (its exit code is in the message)."""


def _call(peer: str, socket: Path, command: str, args: dict[str, Any], timeout: float) -> Any:
    try:
        return control.call(socket, command, args, timeout=timeout)
    except control.DaemonNotRunning as exc:
        raise PeerError(peer, "unreachable", str(exc)) from None
    except control.ControlTimeout as exc:
        raise PeerError(peer, "timeout", str(exc)) from None
    except control.RemoteError as exc:
        kinds = {"conflict": Conflict, "stale": Stale, "start_failed": StartRefused}
        raise kinds.get(exc.type, PeerError)(peer, exc.type, str(exc)) from None
    except control.ControlError as exc:
        raise PeerError(peer, "protocol", str(exc)) from None


class BeadsPeer:
    def __init__(self, runtime: Path, *, timeout_s: float) -> None:
        self.socket = paths.control_socket(runtime, BEADS)
        self.timeout_s = timeout_s

    def call(self, command: str, **args: Any) -> Any:
        return _call(BEADS, self.socket, command, args, self.timeout_s)

    def ready(self) -> list[str]:
        """Dispatchable bead ids (ready and unassigned), in dispatch order."""
        result = self.call("ready", unassigned=True)
        if not isinstance(result, dict) or not isinstance(result.get("ready"), list):
            raise PeerError(BEADS, "protocol", f"ready answered {result!r:.200}")
        return [str(bead["id"]) for bead in result["ready"]]

    def claims(self) -> dict[str, LiveClaim]:
        """Every live (`claimed`) claim, by bead. A store it could not read is an error:
        the claims listing would be beside an unknown store."""
        result = self.call("list")
        if not isinstance(result, dict) or not isinstance(result.get("claimed"), list):
            raise PeerError(BEADS, "protocol", f"list answered {result!r:.200}")
        if result.get("error"):
            raise PeerError(BEADS, "store_error", str(result["error"]))
        out = {}
        for claim in result["claimed"]:
            if claim.get("state") == "claimed":
                bead = str(claim["bead_id"])
                out[bead] = LiveClaim(bead, str(claim["loop_id"]), int(claim["generation"]))
        return out

    def claim(self, bead_id: str, loop_id: str) -> int:
        """Claim for `loop_id`; returns the claim's generation. Raises Conflict."""
        result = self.call("claim", bead_id=bead_id, loop_id=loop_id)
        return int(result["generation"])

    def close(self, bead_id: str, loop_id: str, generation: int, stats: Mapping[str, Any]) -> None:
        self.call("close", bead_id=bead_id, loop_id=loop_id, generation=generation,
                  reason="landed", stats=dict(stats))  # fmt: skip

    def fail(self, bead_id: str, loop_id: str, generation: int, reason: str) -> str:
        """Returns the bead's new status (open, or blocked after its last attempt)."""
        result = self.call("fail", bead_id=bead_id, loop_id=loop_id, generation=generation,
                           reason=reason or "the loop failed")  # fmt: skip
        return str(result.get("status", ""))

    def release(self, bead_id: str, loop_id: str, generation: int, reason: str) -> None:
        self.call("release", bead_id=bead_id, loop_id=loop_id, generation=generation,
                  reason=reason)  # fmt: skip


# A loop child factoryd is (re)starting is live: resuming it too would run the loop twice.
LIVE_STATES = ("running", "starting")


class FactorydPeer:
    def __init__(self, runtime: Path, *, supervisor: str, timeout_s: float,
                 start_timeout_s: float) -> None:  # fmt: skip
        self.socket = paths.control_socket(runtime)
        self.supervisor = supervisor
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.started_at: float | None = None  # the running factoryd's start (wall clock)

    def loops(self) -> dict[str, Process]:
        """The `loops` supervisor's children, by loop id (from each child's start args);
        `started_at` is set from the same answer."""
        status = _call("factoryd", self.socket, "status", {}, self.timeout_s)
        started = (status.get("daemon") or {}).get("started_at")
        self.started_at = float(started) if isinstance(started, int | float) else None
        node = _find(status.get("tree", {}), self.supervisor)
        if node is None:
            raise PeerError("factoryd", "not_found", f"no supervisor {self.supervisor!r}")
        out = {}
        for child in node.get("children", []):
            start = str(child.get("start", ""))
            found, beads = _LOOP_ID_ARG.findall(start), _BEAD_ARG.findall(start)
            if found:  # the last one wins, as argparse takes it
                out[found[-1]] = Process(str(child["id"]), child.get("pid"),
                                         child.get("state") in LIVE_STATES,
                                         beads[-1] if beads else "")  # fmt: skip
        return out

    def stop(self, child_id: str) -> None:
        """Stop a loop child (SIGTERM, its shutdown time, SIGKILL); gone already is fine."""
        try:
            _call("factoryd", self.socket, "stop", {"id": child_id}, self.timeout_s)
        except PeerError as exc:
            if exc.kind != "not_found":
                raise

    def start(self, args: list[str]) -> tuple[str, int]:
        """Start a loop child with `args`; returns (child id, pid) once it said READY=1.
        Raises StartRefused (its reason names the exit code), PeerError."""
        result = _call("factoryd", self.socket, "start", {"id": self.supervisor, "args": args},
                       self.start_timeout_s)  # fmt: skip
        return str(result["id"]), int(result["pid"])


def _find(node: Mapping[str, Any], node_id: str) -> Mapping[str, Any] | None:
    if node.get("id") == node_id:
        return node
    for child in node.get("children", []):
        found = _find(child, node_id)
        if found is not None:
            return found
    return None


class LoopRecords:
    """loops.sqlite3, read-only (query_only; never created here). Until a loop has run,
    there is no file, and every loop is unknown."""

    def __init__(self, state_dir: Path) -> None:
        self.path = loop_records.loops_path(state_dir)
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None and self.path.is_file():
            db = sqlite3.connect(self.path, timeout=loop_records.BUSY_TIMEOUT_S,
                                 isolation_level=None, check_same_thread=False)  # fmt: skip
            db.execute("PRAGMA query_only=1")
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def view(self, loop_id: str) -> LoopView | None:
        db = self._open()
        if db is None:
            return None
        try:
            row = db.execute(
                "SELECT loop_id, bead_id, attempt, phase, state, created_at, updated_at "
                "FROM loops WHERE loop_id = ?",
                (loop_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise PeerError("loops.sqlite3", "unreadable", str(exc)) from None
        if row is None:
            return None
        loop, bead, attempt, phase, text, created, updated = row
        try:
            state = orjson.loads(text)
        except orjson.JSONDecodeError:
            state = {}
        if not isinstance(state, dict):
            state = {}
        counters = {k: int(state.get(k) or 0) for k in ("iteration", "greens", "commits",
                                                        "reverts")}  # fmt: skip
        try:
            pushed = db.execute(
                "SELECT content FROM history WHERE loop_id = ? AND event = 'Pushed' "
                "ORDER BY seq DESC LIMIT 1",
                (loop_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise PeerError("loops.sqlite3", "unreadable", str(exc)) from None
        return LoopView(
            loop_id=loop, bead_id=bead, attempt=int(attempt), phase=str(phase),
            green_commit=str(state.get("green_commit") or ""),
            golden_hash=str(state.get("golden_hash") or ""),
            reason=str(state.get("reason") or ""), counters=counters,
            created_at=float(created), updated_at=float(updated),
            pushed=str(pushed[0]).strip() if pushed else "",
            workspace=str(state.get("workspace") or ""),
        )  # fmt: skip

    def attempts(self, bead_id: str) -> list[int]:
        db = self._open()
        if db is None:
            return []
        try:
            rows = db.execute("SELECT attempt FROM loops WHERE bead_id = ?", (bead_id,))
            return [int(row[0]) for row in rows]
        except sqlite3.Error as exc:
            raise PeerError("loops.sqlite3", "unreadable", str(exc)) from None


def free_loop_slots(runtime: Path, live: int, max_loops: int | None) -> int:
    """Loop slots free now, without waiting or taking one: the ledger's `available`
    (the loop process takes its own slot, with SEM_UNDO), capped by `max_loops` minus
    the `live` loops when given. Without a governor (no ledger) only `max_loops` bounds
    it, 1 when not given: never an unbounded start."""
    cap = None if max_loops is None else max(0, max_loops - live)
    try:
        snap = ledger.snapshot(runtime)
    except ledger.LedgerMissing:
        return cap if cap is not None else max(0, 1 - live)
    except (ledger.LedgerError, OSError, ValueError) as exc:
        raise PeerError("ledger", "unreadable", str(exc)) from None
    available = int(snap["resources"]["loop"]["available"])
    return available if cap is None else min(available, cap)
