"""The merge queue's own bare repository: patches fetched in, speculative commits built.

It borrows the golden repository's objects (objects/info/alternates), so golden commits
cost nothing here; the golden master fetches an accepted commit back from it. Every
call runs `git` with a timeout, hooks off, no system or global config, a fixed
committer; GitError names the command, exit status and stderr.

    repo = QueueRepo.open(path, golden_repo)
    repo.fetch(source, ref, patch_id) -> tip            refs/mq/patches/<id>
    repo.build(base, tip, patch_id, title) -> Spec      refs/mq/spec/<id>
    repo.add_slot(path, rev), repo.checkout(slot, rev)  the K reused worktrees
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from procs.merge_queue.pipeline import Spec

GIT_TIMEOUT_S = 30.0
COMMITTER = {"GIT_COMMITTER_NAME": "Factory Merge Queue",
             "GIT_COMMITTER_EMAIL": "merge-queue@factory.invalid"}  # fmt: skip
_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "gc.auto=0"]


class GitError(RuntimeError):
    def __init__(self, message: str, returncode: int | None = None, stdout: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout


def git(repo: Path, *args: str, env: dict[str, str] | None = None,
        timeout_s: float = GIT_TIMEOUT_S) -> str:  # fmt: skip
    """`git -C repo ARGS` -> stdout; GitError on a non-zero exit or the timeout."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": COMMITTER["GIT_COMMITTER_NAME"],
        "GIT_AUTHOR_EMAIL": COMMITTER["GIT_COMMITTER_EMAIL"], **COMMITTER, **(env or {}),
    }  # fmt: skip
    argv = ["git", "-C", str(repo), *_SAFE, *args]
    try:
        done = subprocess.run(argv, capture_output=True, env=full_env, timeout=timeout_s,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} in {repo}: no answer in {timeout_s} s") from None
    out = done.stdout.decode(errors="surrogateescape")
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[:2000]
        raise GitError(f"git {' '.join(args)} in {repo}: exit {done.returncode}: {why}",
                       done.returncode, out)  # fmt: skip
    return out


class QueueRepo:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, path: Path, golden: Path) -> QueueRepo:
        """Create (or reuse) the bare repository at `path`, borrowing `golden`'s objects.
        Lock files a killed predecessor's git left are removed: only the (one) merge
        queue process uses this repository, and it has not started work yet."""
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            git(path, "init", "-q", "--bare")
        common = git(golden, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
        alternates = path / "objects" / "info" / "alternates"
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(str(Path(common) / "objects") + "\n")
        for stale in [*path.glob("refs/**/*.lock"), *path.glob("worktrees/*/index.lock"),
                      *path.glob("*.lock")]:  # fmt: skip
            stale.unlink()  # a git killed with us; the repository is this process's alone
        git(path, "worktree", "prune")
        return cls(path)

    def rev(self, rev: str) -> str:
        return git(
            self.path, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}"
        ).strip()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            git(self.path, "merge-base", "--is-ancestor", ancestor, descendant)
        except GitError as exc:
            if exc.returncode == 1:
                return False
            raise
        return True

    def merge_base(self, a: str, b: str) -> str:
        return git(self.path, "merge-base", a, b).strip()

    def fetch(self, source: str, ref: str, patch_id: str) -> str:
        """Fetch `ref` (a branch, HEAD or a commit) of repository or bundle `source` as
        refs/mq/patches/<patch_id>; returns its commit."""
        dest = f"refs/mq/patches/{patch_id}"
        git(self.path, "fetch", "-q", "--no-tags", "--no-write-fetch-head", source,
            f"+{ref}:{dest}", timeout_s=120.0)  # fmt: skip
        return self.rev(dest)

    def diffstat(self, base: str, tip: str) -> str:
        return git(self.path, "diff", "--stat", base, tip)[-4000:]

    def build(self, base: str, tip: str, patch_id: str, title: str) -> Spec:
        """The patch `tip` on `base`: `tip` itself when it sits on `base` (a fast-forward),
        else one commit with the three-way merge's tree (merge base: where they meet)."""
        if self.is_ancestor(tip, base):
            return Spec(base, base, empty=True, contained=True)
        if self.is_ancestor(base, tip):
            spec = Spec(base, tip)
        else:
            try:
                tree = git(self.path, "merge-tree", "--write-tree", "--name-only",
                           "--no-messages", base, tip).splitlines()[0]  # fmt: skip
            except GitError as exc:
                if exc.returncode == 1:
                    files = ", ".join(exc.stdout.splitlines()[1:][:10])
                    return Spec(base, None, detail=f"conflicts with golden in: {files}")
                raise
            if tree == git(self.path, "rev-parse", f"{base}^{{tree}}").strip():
                return Spec(base, base, empty=True)
            spec = Spec(base, self._commit(tree, base, tip, patch_id, title))
        assert spec.tip is not None
        git(self.path, "update-ref", f"refs/mq/spec/{patch_id}", spec.tip)
        return spec

    def _commit(self, tree: str, base: str, tip: str, patch_id: str, title: str) -> str:
        name, email, date, subject = git(
            self.path, "log", "-1", "--format=%an%x00%ae%x00%ad%x00%s", tip
        ).rstrip("\n").split("\x00", 3)  # fmt: skip
        message = f"{title or subject}\n\nMerge-Queue-Patch: {patch_id}\nSource-Commit: {tip}\n"
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
        return git(self.path, "commit-tree", tree, "-p", base, "-m", message, env=env).strip()

    def add_slot(self, slot: Path, rev: str) -> None:
        if (slot / ".git").exists():
            self.checkout(slot, rev)
            return
        git(self.path, "worktree", "add", "-q", "--detach", "-f", str(slot), rev)

    def checkout(self, slot: Path, rev: str) -> None:
        git(slot, "checkout", "-q", "-f", "--detach", rev)
        git(slot, "clean", "-q", "-ffdx")
