"""Relaxed TCR on a loop's workspace (DESIGN.md "TDD-TCR"): test && commit || revert.

    commit(workspace, message, onto=None) -> hash   commit the work tree (folding commits
                                                    since `onto` into one)
    revert_non_test_code(workspace, to_commit)      back to the red test commit: the
                                                    implementer's changes go, the auditor's
                                                    committed tests stay
    reset_to(workspace, commit)                     an interrupted phase is redone from its
                                                    start commit (resume), a gauntlet failure
                                                    goes back to the red commit
    touched_tests(workspace, since) -> paths        test/harness paths changed since a commit

A revert is `git reset --hard` plus `git clean -fd` (ignored files stay: a virtualenv in
the workspace survives). The commits the loop makes are the only commits: a test run's
code cannot run git hooks (tcr_policy makes .git read-only, and git.py runs with hooks
off). Each call is a few git subprocesses, each bounded by git.GIT_TIMEOUT_S.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from procs.loop import git
from procs.testfiles import protected


class NotAncestor(ValueError):
    """A revert or reset target that is not HEAD or one of its ancestors: going there
    would drop commits the loop made, or jump to unrelated history."""


def commit(
    workspace: Path, message: str, *, onto: str | None = None, allow_empty: bool = False
) -> str:
    """Commit everything in the work tree; return the new HEAD. With `onto`, the commits
    since `onto` (a red test commit) are folded in, so no red commit stays in the history.
    Raises git.GitError (also when there is nothing to commit, unless `allow_empty`)."""
    return git.commit_all(workspace, message, onto=onto, allow_empty=allow_empty)


def revert_non_test_code(workspace: Path, to_commit: str) -> str:
    """Undo a failed implementation: the work tree becomes `to_commit` (the red test
    commit, which holds the auditor's tests) exactly; untracked files go, ignored ones
    stay. `to_commit` must be HEAD or an ancestor (NotAncestor otherwise). Returns HEAD."""
    return _reset(workspace, to_commit)


def reset_to(workspace: Path, commit: str) -> str:
    """Redo an interrupted phase from `commit` (its persisted start): reset --hard and
    clean, as revert_non_test_code, to any commit of the workspace's repository (after a
    crash HEAD may be an unpersisted commit beside it: that work is redone, never kept
    half-recorded). Also for a gauntlet or refactor failure. Returns HEAD."""
    return git.reset_hard(workspace, commit)


def touched_tests(workspace: Path, since: str) -> list[PurePosixPath]:
    """The test, harness and .git paths that differ between `since` and the work tree:
    an implementer's change that lists any is refused whatever the tests say."""
    return protected(git.changed_paths(workspace, since))


def _reset(workspace: Path, target: str) -> str:
    if not git.is_ancestor(workspace, target, "HEAD"):
        raise NotAncestor(
            f"{target} is not HEAD or an ancestor of HEAD ({git.head(workspace)}) in {workspace}"
        )
    return git.reset_hard(workspace, target)
