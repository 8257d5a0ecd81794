"""Did a loop's commit land? A bead is closed only when its commit is an ancestor of
golden HEAD (DESIGN.md "Landing is one transaction"); the loop's word is not enough.

    GoldenAncestry(repo, branch).landed(commit) -> True | False     raises LandingUnknown

It only reads the golden repository (`git merge-base --is-ancestor`, bounded by a
timeout). Until the merge queue answers `landed` itself, this is the check; a git that
fails or hangs is LandingUnknown, never "not landed": the bead stays claimed and the
next round asks again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 30.0


class LandingUnknown(Exception):
    """The golden repository could not say; the message says why."""


class GoldenAncestry:
    def __init__(self, repo: Path, branch: str, *, timeout_s: float = GIT_TIMEOUT_S) -> None:
        self.repo = repo
        self.branch = branch
        self.timeout_s = timeout_s

    def landed(self, commit: str) -> bool:
        if not commit:
            raise LandingUnknown("the loop recorded no commit")
        ref = f"refs/heads/{self.branch}"
        try:
            done = subprocess.run(
                ["git", "-C", str(self.repo), "merge-base", "--is-ancestor", commit, ref],
                capture_output=True, text=True, timeout=self.timeout_s, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LandingUnknown(f"git merge-base in {self.repo}: {exc}") from None
        if done.returncode in (0, 1):
            return done.returncode == 0
        raise LandingUnknown(
            f"git merge-base {commit} {ref} in {self.repo}: exit {done.returncode}: "
            f"{done.stderr.strip()[:300]}"
        )

    def head(self) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(self.repo), "rev-parse", "--verify", f"refs/heads/{self.branch}"],
                capture_output=True, text=True, timeout=self.timeout_s, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LandingUnknown(f"git rev-parse in {self.repo}: {exc}") from None
        if done.returncode != 0:
            raise LandingUnknown(f"{self.repo}: no branch {self.branch}: {done.stderr.strip()}")
        return done.stdout.strip()
