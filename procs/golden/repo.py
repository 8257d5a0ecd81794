"""The golden repository's git operations: read HEAD, compare-and-swap the branch, sync.

Every call runs `git` with a timeout (GIT_TIMEOUT_S unless given), hooks off, no system
or global config and a fixed identity, and raises GitError (command, exit status,
stderr) or GitTimeout. Nothing here decides policy: service.py does.

    repo = GoldenRepo.open(path, branch)      # RepoProblem: not there, not git, no branch
    repo.head() -> str                        # the branch's commit
    repo.advance(to, expected_head)           # CAS: StaleHead / NotDescendant
    repo.fetch(source, rev), repo.fetch_upstream(remote), repo.push_upstream(remote)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 30.0
IDENTITY = {
    "GIT_AUTHOR_NAME": "Factory Golden", "GIT_AUTHOR_EMAIL": "golden@factory.invalid",
    "GIT_COMMITTER_NAME": "Factory Golden", "GIT_COMMITTER_EMAIL": "golden@factory.invalid",
}  # fmt: skip
_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false"]


class GitError(RuntimeError):
    """A git command failed; the message names the command, exit status and stderr."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


class GitTimeout(GitError):
    """A git command ran past its timeout and was killed."""


class RepoProblem(Exception):
    """The golden repository cannot be used (missing, not git, no branch): says which."""


class StaleHead(Exception):
    """A compare-and-swap found the branch somewhere else than expected."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"golden is at {actual}, not {expected}")
        self.expected, self.actual = expected, actual


class NotDescendant(Exception):
    """An advance to a commit that does not descend from HEAD (not a fast-forward)."""


def git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0", **IDENTITY,
    }  # fmt: skip


def git(repo: Path, *args: str, timeout_s: float = GIT_TIMEOUT_S) -> str:
    """Run `git -C repo ARGS`; return stdout. Blocks at most `timeout_s`."""
    argv = ["git", "-C", str(repo), *_SAFE, *args]
    try:
        done = subprocess.run(
            argv, capture_output=True, env=git_env(), timeout=timeout_s, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GitTimeout(f"git {' '.join(args)} in {repo}: no answer in {timeout_s} s") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[:2000]
        raise GitError(f"git {' '.join(args)} in {repo}: exit {done.returncode}: {why}",
                       done.returncode)  # fmt: skip
    return done.stdout.decode(errors="surrogateescape")


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    try:
        git(repo, "merge-base", "--is-ancestor", ancestor, descendant)
    except GitError as exc:
        if exc.returncode == 1:
            return False
        raise
    return True


@dataclass(frozen=True)
class GoldenRepo:
    """The golden repository at `path` and its `branch`; `bare`: no work tree to follow."""

    path: Path
    branch: str
    bare: bool
    checked_out: bool  # the work tree has the branch checked out: it follows each move

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    @classmethod
    def open(cls, path: Path, branch: str) -> GoldenRepo:
        """Check that `path` is a git repository with `branch`; RepoProblem says what not."""
        if not path.is_dir():
            raise RepoProblem(f"golden repository {path}: no such directory")
        try:
            top = git(path, "rev-parse", "--is-bare-repository").strip()
        except GitError as exc:
            raise RepoProblem(f"golden repository {path} is not a git repository: {exc}") from None
        bare = top == "true"
        if not bare and git(path, "rev-parse", "--show-toplevel").strip() != str(path.resolve()):
            raise RepoProblem(f"golden repository {path} is inside another repository")
        try:
            git(path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}")
        except GitError:
            raise RepoProblem(f"golden repository {path} has no branch {branch!r}") from None
        checked_out = False
        if not bare:
            try:
                current = git(path, "symbolic-ref", "-q", "HEAD").strip()
            except GitError:
                current = ""
            if current != f"refs/heads/{branch}":
                raise RepoProblem(
                    f"golden repository {path} has {current or 'a detached HEAD'} checked "
                    f"out, not {branch!r}"
                )
            checked_out = True
        return cls(path=path.resolve(), branch=branch, bare=bare, checked_out=checked_out)

    def clear_stale_locks(self) -> list[str]:
        """Remove the lock files a killed predecessor's git left on what only this process
        writes: the branch's ref and (with a work tree) the index. Call at start only.
        Returns what was removed."""
        common = Path(git(self.path, "rev-parse", "--path-format=absolute",
                          "--git-common-dir").strip())  # fmt: skip
        locks = [common / f"{self.ref}.lock", common / "packed-refs.lock"]
        if not self.bare:
            locks.append(common / "index.lock")
        removed = [str(lock) for lock in locks if lock.exists()]
        for lock in locks:
            lock.unlink(missing_ok=True)
        return removed

    def head(self) -> str:
        return git(self.path, "rev-parse", "--verify", f"{self.ref}^{{commit}}").strip()

    def has_commit(self, rev: str) -> bool:
        try:
            git(self.path, "cat-file", "-e", f"{rev}^{{commit}}")
        except GitError:
            return False
        return True

    def fetch(self, source: str, rev: str) -> None:
        """Bring commit `rev` (and what it needs) from repository `source`."""
        if not self.has_commit(rev):
            git(self.path, "fetch", "-q", "--no-tags", "--no-write-fetch-head", source, rev)

    def advance(self, to: str, expected_head: str) -> str:
        """Move the branch to `to` if it is still at `expected_head` (compare-and-swap,
        `git update-ref REF NEW OLD`) and `to` descends from it. Returns the previous
        head. A checked-out work tree follows (`git reset --hard`: it is ours alone).
        Raises StaleHead, NotDescendant, GitError."""
        current = self.head()
        if current != expected_head:
            raise StaleHead(expected_head, current)
        if not is_ancestor(self.path, expected_head, to):
            raise NotDescendant(f"{to} does not descend from golden {expected_head}")
        try:
            git(self.path, "update-ref", "-m", "golden advance", self.ref, to, expected_head)
        except GitError:
            actual = self.head()
            if actual != expected_head:
                raise StaleHead(expected_head, actual) from None
            raise
        if self.checked_out:
            git(self.path, "reset", "-q", "--hard", to)
        return current

    @contextlib.contextmanager
    def work_tree(self, rev: str) -> Iterator[Path]:
        """A work tree at `rev` to run the suite in: the repository's own when it has one
        (it follows the branch), else a temporary detached worktree, removed after."""
        if not self.bare:
            yield self.path
            return
        with tempfile.TemporaryDirectory(prefix="golden-suite-") as scratch:
            tree = Path(scratch) / "tree"
            git(self.path, "worktree", "add", "-q", "--detach", str(tree), rev)
            try:
                yield tree
            finally:
                git(self.path, "worktree", "remove", "--force", str(tree))

    def fetch_upstream(self, remote: str) -> str:
        """Fetch BRANCH from `remote`; returns the commit it is at there."""
        git(self.path, "fetch", "-q", "--no-tags", remote, self.ref, timeout_s=120.0)
        return git(self.path, "rev-parse", "--verify", "FETCH_HEAD^{commit}").strip()

    def push_upstream(self, remote: str) -> None:
        """Push BRANCH to `remote` (a fast-forward there, or git refuses)."""
        git(self.path, "push", "-q", remote, f"{self.ref}:{self.ref}", timeout_s=120.0)
