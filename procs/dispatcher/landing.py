"""Did a loop's commit land? A bead is closed only when its commit is an ancestor of
golden HEAD (DESIGN.md "Landing is one transaction"); the loop's word is not enough.

    GoldenAncestry(runtime, repo=None, branch=None).landed(commit) -> True | False
        raises LandingUnknown

Where golden is: --golden REPO (and --branch, default its checked-out branch) when
given, else the golden master's `get_hash` on <runtime>/golden.sock (repo and branch),
asked at each check. Then `git merge-base --is-ancestor COMMIT refs/heads/BRANCH` in that
repository, read only, bounded by a timeout. A git that fails or hangs, or a golden
master that does not answer, is LandingUnknown, never "not landed": the bead stays
claimed and the next round asks again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ipc import control, paths

GIT_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 10.0
GOLDEN = "golden"


class LandingUnknown(Exception):
    """The golden repository could not say; the message says why."""


class GoldenAncestry:
    def __init__(self, runtime: Path, *, repo: Path | None = None, branch: str | None = None,
                 timeout_s: float = GIT_TIMEOUT_S) -> None:  # fmt: skip
        self.socket = paths.control_socket(runtime, GOLDEN)
        self.repo = repo
        self.branch = branch or ""
        self.timeout_s = timeout_s

    def where(self) -> tuple[Path, str]:
        """(repository, branch) of golden; raises LandingUnknown."""
        if self.repo is not None:
            return self.repo, self.branch or _checked_out(self.repo, self.timeout_s)
        try:
            got = control.call(self.socket, "get_hash", {}, timeout=CALL_TIMEOUT_S)
        except control.ControlError as exc:
            raise LandingUnknown(f"the golden master: {exc}") from None
        self.branch = str(got["branch"])
        return Path(str(got["repo"])), self.branch

    def landed(self, commit: str) -> bool:
        if not commit:
            raise LandingUnknown("the loop recorded no commit")
        repo, branch = self.where()
        ref = f"refs/heads/{branch}"
        argv = ["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, ref]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s,
                                  check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LandingUnknown(f"git merge-base in {repo}: {exc}") from None
        if done.returncode in (0, 1):
            return done.returncode == 0
        raise LandingUnknown(
            f"git merge-base {commit} {ref} in {repo}: exit {done.returncode}: "
            f"{done.stderr.strip()[:300]}"
        )


def _checked_out(repo: Path, timeout_s: float) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), "symbolic-ref", "-q", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=timeout_s,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LandingUnknown(f"git symbolic-ref in {repo}: {exc}") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise LandingUnknown(f"{repo}: not a git repository on a branch ({done.stderr.strip()})")
    return done.stdout.strip()
