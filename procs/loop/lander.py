"""Pushing and Rebasing (fs-175, fs-176) through a Lander: where a loop's tested commits go.

Step 9 puts the merge queue behind this interface. Until then, FastForwardLander moves a
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

from pathlib import Path
from typing import Protocol

from procs.loop import git
from procs.loop.events import PushConflict, Pushed, PushError, RebaseConflict, Rebased
from procs.loop.state import FactoryLoopState


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
