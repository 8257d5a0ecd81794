"""The git operations of TCR, on a loop's workspace: commit, revert, reset, what changed.

Every call runs `git` as a subprocess with a timeout (GIT_TIMEOUT_S unless given) and
raises GitError naming the command, its exit status and stderr; GitTimeout when the
timeout passed (the git process is killed). Git runs with hooks off
(core.hooksPath=/dev/null) and no system or global config, and with a fixed committer
identity: agent-written code must never run outside the sandbox through a hook, and a
commit must not depend on the host's config. Nothing here decides policy: tcr.py does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

GIT_TIMEOUT_S = 30.0
IDENTITY = {
    "GIT_AUTHOR_NAME": "Factory Loop", "GIT_AUTHOR_EMAIL": "loop@factory.invalid",
    "GIT_COMMITTER_NAME": "Factory Loop", "GIT_COMMITTER_EMAIL": "loop@factory.invalid",
}  # fmt: skip
_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false"]


class GitError(RuntimeError):
    """A git command failed; the message has the command, exit status and stderr;
    `returncode` is git's exit status (None for a timeout)."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


class GitTimeout(GitError):
    """A git command ran past its timeout and was killed."""


def git(
    workspace: Path, *args: str, timeout_s: float = GIT_TIMEOUT_S, stdin: str | None = None
) -> str:
    """Run `git -C workspace ARGS` (with `stdin` as its input, else none); return stdout.
    Blocks at most `timeout_s`."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0", **IDENTITY,
    }  # fmt: skip
    argv = ["git", "-C", str(workspace), *_SAFE, *args]
    try:
        if stdin is None:
            done = subprocess.run(
                argv, capture_output=True, env=env, timeout=timeout_s, check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        else:
            done = subprocess.run(
                argv, capture_output=True, env=env, timeout=timeout_s, check=False,
                input=stdin.encode(),
            )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GitTimeout(
            f"git {' '.join(args)} in {workspace}: no answer in {timeout_s} s"
        ) from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[:2000]
        raise GitError(
            f"git {' '.join(args)} in {workspace}: exit {done.returncode}: {why}", done.returncode
        )
    return done.stdout.decode(errors="surrogateescape")


def head(workspace: Path) -> str:
    """The full hash HEAD points at."""
    return git(workspace, "rev-parse", "--verify", "HEAD^{commit}").strip()


def resolve(workspace: Path, rev: str) -> str:
    """The full hash of commit `rev`; GitError if there is none."""
    return git(workspace, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").strip()


def commit_all(
    workspace: Path, message: str, *, onto: str | None = None, allow_empty: bool = False
) -> str:
    """Commit every change in the work tree (new, changed, deleted files); return HEAD.

    With `onto`, the commits since `onto` are folded into this one (`reset --soft onto`
    first): a red test commit and its implementation land as one green commit. Raises
    GitError when there is nothing to commit, unless `allow_empty`.
    """
    if onto is not None:
        git(workspace, "reset", "-q", "--soft", resolve(workspace, onto))
    git(workspace, "add", "-A")
    empty = ["--allow-empty"] if allow_empty else []
    git(workspace, "commit", "-q", "--no-verify", *empty, "-m", message)
    return head(workspace)


def reset_hard(workspace: Path, commit: str) -> str:
    """`git reset --hard commit` then `git clean -fd`: the work tree is exactly `commit`
    (ignored files stay). A rebase a crash left half done is quit first (its state would
    refuse the next rebase). Returns HEAD."""
    target = resolve(workspace, commit)
    if rebase_in_progress(workspace):
        git(workspace, "rebase", "--quit")
    git(workspace, "reset", "-q", "--hard", target)
    git(workspace, "clean", "-q", "-f", "-d")
    return head(workspace)


def rebase_in_progress(workspace: Path) -> bool:
    """Whether a rebase (merge or apply backend) was started and not finished."""
    for name in ("rebase-merge", "rebase-apply"):
        where = Path(git(workspace, "rev-parse", "--git-path", name).strip())
        if (where if where.is_absolute() else workspace / where).exists():
            return True
    return False


def changed_paths(workspace: Path, since: str) -> list[PurePosixPath]:
    """Paths that differ between commit `since` and the work tree: committed since,
    staged, modified, deleted or untracked (not ignored), renames as both names."""
    base = resolve(workspace, since)
    names: set[str] = set()
    names.update(_z(git(workspace, "diff", "--name-only", "--no-renames", "-z", base, "--")))
    names.update(_z(git(workspace, "ls-files", "--others", "--exclude-standard", "-z")))
    return sorted(PurePosixPath(name) for name in names)


def is_clean(workspace: Path) -> bool:
    """No staged, modified, deleted or untracked (not ignored) file."""
    return git(workspace, "status", "--porcelain", "-z", "--untracked-files=all") == ""


def is_ancestor(workspace: Path, older: str, newer: str) -> bool:
    """Whether commit `older` is `newer` or one of its ancestors."""
    try:
        git(workspace, "merge-base", "--is-ancestor", resolve(workspace, older),
            resolve(workspace, newer))  # fmt: skip
    except GitError as exc:
        if exc.returncode == 1:
            return False
        raise
    return True


def commits_between(workspace: Path, base: str, tip: str = "HEAD") -> list[str]:
    """The commits after `base` up to `tip`, oldest first."""
    out = git(workspace, "rev-list", "--reverse", f"{resolve(workspace, base)}..{tip}")
    return out.split()


def _z(text: str) -> Sequence[str]:
    return [name for name in text.split("\0") if name]
