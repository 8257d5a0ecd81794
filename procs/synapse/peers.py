"""The synapse's peers, asked over their control sockets with bounded waits.

    FactorydPeer   start a mutator (a dynamic child of the `mutators` supervisor), signal
                   one (`kill`, no wait), stop one (SIGTERM, its shutdown time, SIGKILL:
                   factoryd waits for the exit), list the live ones (with their start
                   lines: a restarted synapse finds its mutators by their --generation)
    golden_head    the golden master's `get_hash`: {hash, repo, state, ...}
    golden_status  its `status` (last_failure: the output of its last red run)
    patch_group    the merge queue's `show`: the group a patch was proposed in
    capacity       the ledger's free mutator slots and the RAM free above its floor

Every call raises PeerError naming the peer and its words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

from ipc import control, ledger, paths

GOLDEN = "golden"
QUEUE = "merge_queue"
START_WAIT_S = 180.0  # a start held behind another child's start (factoryd serves one)


class PeerError(RuntimeError):
    """A peer did not answer, or refused; `kind` is its error type ("timeout", ...)."""

    def __init__(self, peer: str, kind: str, message: str) -> None:
        super().__init__(f"{peer}: {message}")
        self.peer, self.kind = peer, kind


def call(peer: str, socket: Path, command: str, args: dict[str, Any], timeout_s: float) -> Any:
    try:
        return control.call(socket, command, args, timeout=timeout_s)
    except control.RemoteError as exc:
        raise PeerError(peer, exc.type, str(exc)) from None
    except control.ControlTimeout as exc:
        raise PeerError(peer, "timeout", str(exc)) from None
    except control.ControlError as exc:
        raise PeerError(peer, "unavailable", str(exc)) from None


class FactorydPeer:
    def __init__(self, runtime: Path, *, supervisor: str, timeout_s: float) -> None:
        self.socket = paths.control_socket(runtime)
        self.supervisor = supervisor
        self.timeout_s = timeout_s

    def start(self, args: list[str]) -> tuple[str, int]:
        """A new mutator child with `args`; returns (child id, pid). factoryd serves a
        start after any start it is in (a loop's may wait up to its start timeout, 120 s
        in the example): this waits START_WAIT_S."""
        result = call("factoryd", self.socket, "start", {"id": self.supervisor, "args": args},
                      max(self.timeout_s, START_WAIT_S))  # fmt: skip
        return str(result["id"]), int(result["pid"])

    def kill(self, child_id: str, signal_name: str = "SIGTERM") -> bool:
        """Signal a mutator's process group now (factoryd `kill`: it does not wait);
        False when it is not running."""
        try:
            call("factoryd", self.socket, "kill", {"id": child_id, "signal": signal_name},
                 self.timeout_s)  # fmt: skip
        except PeerError as exc:
            if exc.kind in ("not_found", "not_allowed"):
                return False
            raise
        return True

    def stop(self, child_id: str) -> bool:
        """Stop a mutator; False when it was gone already (exited, forgotten)."""
        try:
            call("factoryd", self.socket, "stop", {"id": child_id}, self.timeout_s)
        except PeerError as exc:
            if exc.kind in ("not_found", "not_allowed"):
                return False
            raise
        return True

    def children(self) -> dict[str, int | None]:
        """The `mutators` supervisor's live children: child id -> pid."""
        return {str(c["id"]): c.get("pid") for c in self._running()}

    def running(self) -> dict[str, str]:
        """The live children's start lines (`target(arg, arg, ...)`): child id -> line."""
        return {str(c["id"]): str(c.get("start") or "") for c in self._running()}

    def _running(self) -> list[dict[str, Any]]:
        status = call("factoryd", self.socket, "status", {}, self.timeout_s)
        node = _find(status.get("tree", {}), self.supervisor)
        if node is None:
            raise PeerError("factoryd", "not_found", f"no supervisor {self.supervisor!r}")
        return [c for c in node.get("children", []) if c.get("state") in ("running", "starting")]


def _find(node: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    if node.get("id") == node_id:
        return node
    for child in node.get("children", []):
        found = _find(child, node_id)
        if found is not None:
            return found
    return None


def golden_head(runtime: Path, timeout_s: float) -> dict[str, Any]:
    result = call(GOLDEN, paths.control_socket(runtime, GOLDEN), "get_hash", {}, timeout_s)
    return dict(result)


def golden_status(runtime: Path, timeout_s: float) -> dict[str, Any]:
    return dict(call(GOLDEN, paths.control_socket(runtime, GOLDEN), "status", {}, timeout_s))


def patch_group(runtime: Path, patch_id: str, timeout_s: float) -> str:
    entry = call(QUEUE, paths.control_socket(runtime, QUEUE), "show", {"patch_id": patch_id},
                 timeout_s)  # fmt: skip
    return str(entry.get("group") or "")


def capacity(runtime: Path) -> tuple[int | None, int]:
    """(free mutator slots, MB of RAM free above the governor's floor); slots are None
    when no governor runs (no ledger: no limit)."""
    available_mb = int(psutil.virtual_memory().available // (1024 * 1024))
    try:
        snap = ledger.snapshot(runtime)
    except ledger.LedgerMissing:
        return None, available_mb
    except (ledger.LedgerError, OSError, ValueError) as exc:
        raise PeerError("ledger", "unreadable", str(exc)) from None
    floor = int(snap.get("min_free_ram_mb") or 0)
    return int(snap["resources"]["mutator"]["available"]), max(0, available_mb - floor)
