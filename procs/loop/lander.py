"""Pushing and Rebasing (fs-175, fs-176) through a Lander: where a loop's tested commits go.

MergeQueueLander (the factory's) proposes the workspace's HEAD to the merge queue service
and waits, bounded, for its verdict: accepted is Pushed (at the golden commit it landed
as), a conflict or a stale patch is PushConflict (the loop rebases and proposes again), a
failed suite or gauntlet in the queue is PushError with the queue's reason and output.
A failed suite while golden is red (the queue lands only a fix then: the patch failed on
golden's own red test, which says nothing of it) waits, bounded by the same deadline,
for golden to be green again and is then PushConflict: the loop rebases onto the fixed
golden and proposes again, and its attempt is not spent on someone else's red.
Its rebase asks the golden master where the golden repository is and rebases there.

FastForwardLander (the one-shot runner's, without services) moves a
local golden repository's branch to the workspace's HEAD with a compare-and-swap
(`git update-ref BRANCH NEW OLD`): only if the branch is still at the golden hash the
loop started from (or last rebased onto), and only to a descendant of it, so what lands
is exactly the tree Verifying tested. Golden moved: PushConflict, and rebase() replays
the loop's commits onto the new golden (a conflict aborts the rebase: RebaseConflict).
A non-bare golden whose work tree has the branch checked out (a person's repository, for
the one-shot runner) is moved by `git merge --ff-only` instead, so its work tree follows;
git refuses (PushError) when local changes there would be overwritten.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from ipc import control, paths
from ipc.queue_words import GOLDEN_RED_NOTE
from procs.loop import git
from procs.loop.events import PushConflict, Pushed, PushError, RebaseConflict, Rebased
from procs.loop.state import FactoryLoopState

GOLDEN_POLL_S = 2.0  # a red golden is fixed in seconds to minutes: a look every 2 s


class Lander(Protocol):
    def land(self, state: FactoryLoopState) -> Pushed | PushConflict | PushError:
        """Offer the workspace's HEAD; say what happened. Blocks on git, bounded."""
        ...

    def rebase(self, state: FactoryLoopState) -> Rebased | RebaseConflict:
        """Replay the loop's commits onto the current golden in the workspace."""
        ...


class FastForwardLander:
    """Lands on `branch` of the local repository `golden` by compare-and-swap."""

    def __init__(self, golden: Path, branch: str = "main") -> None:
        self.golden = Path(golden)
        self.branch = branch

    def land(self, state: FactoryLoopState) -> Pushed | PushConflict | PushError:
        workspace = Path(state.workspace)
        ref = f"refs/heads/{self.branch}"
        try:
            current = git.resolve(self.golden, ref)
            tip = git.head(workspace)
            if current == tip:  # landed already (a loop killed before it recorded Pushed)
                return Pushed(head=tip)
            if current != state.golden_hash:
                return PushConflict(
                    f"golden {self.branch} is at {current}, not {state.golden_hash}"
                )
            git.git(self.golden, "fetch", "-q", "--no-tags", str(workspace), tip)
            if not git.is_ancestor(self.golden, current, tip):
                return PushError(f"{tip} does not descend from golden {current}")
            if self._checked_out(ref):
                # A non-bare golden with the branch checked out: its work tree moves too,
                # and git refuses if local changes there would be overwritten.
                git.git(self.golden, "merge", "-q", "--ff-only", tip)
            else:
                git.git(self.golden, "update-ref", ref, tip, current)
        except git.GitError as exc:
            if git.resolve(self.golden, ref) != state.golden_hash:
                return PushConflict(f"golden {self.branch} moved while landing: {exc}")
            return PushError(str(exc))
        return Pushed(head=tip)

    def _checked_out(self, ref: str) -> bool:
        if git.git(self.golden, "rev-parse", "--is-bare-repository").strip() == "true":
            return False
        try:
            return git.git(self.golden, "symbolic-ref", "-q", "HEAD").strip() == ref
        except git.GitError:
            return False  # a detached HEAD

    def rebase(self, state: FactoryLoopState) -> Rebased | RebaseConflict:
        workspace = Path(state.workspace)
        golden = git.resolve(self.golden, f"refs/heads/{self.branch}")
        git.git(workspace, "fetch", "-q", "--no-tags", str(self.golden), golden)
        try:
            git.git(workspace, "rebase", "-q", golden)
        except git.GitError as exc:
            try:
                git.git(workspace, "rebase", "--abort")
            except git.GitError as abort:
                return RebaseConflict(f"{exc}; and the rebase could not be aborted: {abort}")
            return RebaseConflict(str(exc))
        return Rebased(head=git.head(workspace), golden_hash=golden)


class MergeQueueLander:
    """Lands through the merge queue service in `runtime` (its control socket
    `merge_queue.sock`; the golden master's `golden.sock` for rebasing).

    land() blocks until the queue decides or `verdict_timeout_s` passes; then it withdraws
    the patch (`cancel`) and says PushError, unless the patch landed meanwhile. Proposing
    is idempotent per loop (`key` = loop id): a loop killed while waiting proposes the same
    commits again and gets the same patch, landed or not. A merge queue or golden master
    that is down (being restarted) is waited for, `peer_wait_s` at a time, before it is
    "cannot be reached": that failed the loop (bench/chaos.py).
    """

    def __init__(
        self,
        runtime: Path,
        *,
        verdict_timeout_s: float = 3600.0,
        priority: int = 2,
        call_timeout_s: float = 30.0,
        queue: str = "merge_queue",
        golden: str = "golden",
        peer_wait_s: float = 30.0,
    ) -> None:
        self.queue_socket = paths.control_socket(Path(runtime), queue)
        self.golden_socket = paths.control_socket(Path(runtime), golden)
        self.verdict_timeout_s = verdict_timeout_s
        self.priority = priority
        self.call_timeout_s = call_timeout_s
        self.peer_wait_s = peer_wait_s

    def _call(self, command: str, args: dict[str, Any], wait_s: float = 0.0) -> Any:
        return control.call(self.queue_socket, command, args, timeout=self.call_timeout_s + wait_s)

    def land(self, state: FactoryLoopState) -> Pushed | PushConflict | PushError:
        workspace = Path(state.workspace)
        deadline = time.monotonic() + self.verdict_timeout_s
        try:
            tip = git.head(workspace)
            control.await_answer(self.queue_socket, timeout=self.peer_wait_s)
            entry = self._call("propose", {
                "source": str(workspace), "ref": tip, "base": state.golden_hash,
                "priority": self.priority, "key": state.loop_id, "bead_id": state.bead_id,
                "title": f"{state.bead_id}: loop {state.loop_id}",
            })  # fmt: skip
            while entry["state"] == "queued" and (left := deadline - time.monotonic()) > 0:
                wait_s = min(left, 60.0)
                try:
                    entry = self._call("wait", {"patch_id": entry["patch_id"],
                                                "timeout_s": wait_s}, wait_s)  # fmt: skip
                except (control.DaemonNotRunning, control.PeerGone):  # restarting: it kept it
                    control.await_answer(self.queue_socket, timeout=self.peer_wait_s)
            if entry["state"] == "queued":
                entry = self._call("cancel", {"patch_id": entry["patch_id"]})
                if entry["state"] != "accepted":
                    return PushError(
                        f"the merge queue gave no verdict on {entry['patch_id']} in "
                        f"{self.verdict_timeout_s:.0f} s; it was withdrawn"
                    )
        except control.RemoteError as exc:
            return PushError(f"the merge queue refused the patch ({exc.type}): {exc}")
        except control.ControlError as exc:
            return PushError(f"the merge queue cannot be reached: {exc}")
        except git.GitError as exc:
            return PushError(str(exc))
        decided = verdict(entry)
        if not isinstance(decided, PushError) or entry.get("reason") != "tests":
            return decided
        red = GOLDEN_RED_NOTE in str(entry.get("detail") or "") or self._state() == "red"
        if red and self._green_by(deadline):
            return PushConflict(f"{decided.reason.splitlines()[0]}; golden was red and is "
                                "green again: rebasing onto it")  # fmt: skip
        return decided

    def _state(self) -> str | None:
        """Golden's state by the golden master's word: "green", "red", "unknown" (HEAD
        moved, no verdict yet), or None when it cannot say (restarting)."""
        try:
            status = control.call(self.golden_socket, "status", {}, timeout=self.call_timeout_s)
        except control.ControlError:
            return None
        return str(status.get("state")) if isinstance(status, dict) else None

    def _green_by(self, deadline: float) -> bool:
        """Wait, polling the golden master every GOLDEN_POLL_S, until golden says green
        (a golden master restarting, or a fix whose verdict is still coming, is waited
        for) or `deadline` (monotonic) passes; True when it turned."""
        while time.monotonic() < deadline:
            time.sleep(min(GOLDEN_POLL_S, max(0.0, deadline - time.monotonic())))
            if self._state() == "green":
                return True
        return False

    def rebase(self, state: FactoryLoopState) -> Rebased | RebaseConflict:
        """Rebase onto golden HEAD, wherever the golden master says its repository is."""
        try:
            control.await_answer(self.golden_socket, timeout=self.peer_wait_s)
            golden = control.call(self.golden_socket, "get_hash", {}, timeout=self.call_timeout_s)
        except control.ControlError as exc:
            return RebaseConflict(f"the golden master cannot be reached: {exc}")
        return FastForwardLander(Path(golden["repo"]), golden["branch"]).rebase(state)


def verdict(entry: dict[str, Any]) -> Pushed | PushConflict | PushError:
    """The loop's event for a decided merge-queue entry."""
    if entry["state"] == "accepted":
        return Pushed(head=entry["landed_hash"])
    reason, detail = entry.get("reason") or "rejected", entry.get("detail") or ""
    why = f"the merge queue rejected {entry['patch_id']} ({reason}): {detail}"
    if reason in ("conflict", "stale"):
        return PushConflict(why)
    tail = entry.get("output_tail") or ""
    return PushError(f"{why}\n{tail}" if tail else why)
