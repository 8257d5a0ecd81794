"""Did a loop's commit land? A bead is closed only when its commit is an ancestor of
golden HEAD (DESIGN.md "Landing is one transaction"); the loop's word is not enough.

    GoldenAncestry(runtime, repo=None, branch=None).landed(loop_id, commit) -> True | False
        raises LandingUnknown

`red()` says why no new loop should start while golden is red (its tests fail: a new
loop's suite would fail on them, and the queue lands nothing but a fix).

`proposal(loop_id)` is the queue's state of the loop's latest patch: a loop that died
in Pushing may have proposed a patch that is still queued or already landed.

The merge queue decides first when it runs and knows the loop: its `landed {key:
loop_id}` (the loop's latest patch: landed only when its landed commit is an ancestor of
golden HEAD). A queue that has no patch of that loop (it landed another way: the
FastForwardLander), or no queue, leaves it to golden itself: `commit` (the loop's
Pushed head) must be an ancestor of golden HEAD, by `git merge-base --is-ancestor
COMMIT refs/heads/BRANCH`, read only, bounded by a timeout. Golden is --golden REPO
(and --branch, default its checked-out branch) when given, else where the golden
master's `get_hash` on <runtime>/golden.sock says, asked at each check. A git that
fails or hangs, or a queue or golden master that does not answer, is LandingUnknown,
never "not landed": the bead stays claimed and the next round asks again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ipc import control, paths

GIT_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 10.0
GOLDEN = "golden"
QUEUE = "merge_queue"


class LandingUnknown(Exception):
    """The golden repository could not say; the message says why."""


class GoldenAncestry:
    def __init__(self, runtime: Path, *, repo: Path | None = None, branch: str | None = None,
                 timeout_s: float = GIT_TIMEOUT_S) -> None:  # fmt: skip
        self.socket = paths.control_socket(runtime, GOLDEN)
        self.queue = paths.control_socket(runtime, QUEUE)
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

    def landed(self, loop_id: str, commit: str) -> bool:
        if self.queue.exists():
            try:
                got = control.call(self.queue, "landed", {"key": loop_id},
                                   timeout=CALL_TIMEOUT_S)  # fmt: skip
            except control.RemoteError as exc:
                if exc.type != "not_found":
                    raise LandingUnknown(f"the merge queue: {exc}") from None
            except control.ControlError as exc:
                raise LandingUnknown(f"the merge queue: {exc}") from None
            else:
                return bool(got.get("landed"))
        return self.is_ancestor(commit)

    def proposal(self, loop_id: str) -> str | None:
        """The merge queue's state of the loop's latest patch ("fetching", "queued",
        "accepted", "rejected"), or None when no queue runs here or it has no patch of
        the loop. Raises LandingUnknown when the queue does not answer."""
        if not self.queue.exists():
            return None
        try:
            got = control.call(self.queue, "landed", {"key": loop_id}, timeout=CALL_TIMEOUT_S)
        except control.RemoteError as exc:
            if exc.type == "not_found":
                return None
            raise LandingUnknown(f"the merge queue: {exc}") from None
        except control.ControlError as exc:
            raise LandingUnknown(f"the merge queue: {exc}") from None
        return str(got.get("state") or "") or None

    def red(self) -> str | None:
        """Why no new loop should start: golden is red (the golden master's `status`), or
        None. A golden master that is absent or does not answer holds nothing back (the
        round goes on; landing still waits for golden's word)."""
        if not self.socket.exists():
            return None
        try:
            got = control.call(self.socket, "status", {}, timeout=CALL_TIMEOUT_S)
        except control.ControlError:
            return None
        if not isinstance(got, dict) or got.get("state") != "red":
            return None
        return f"golden is red at {str(got.get('hash'))[:12]}: nothing but a fix can land"

    def is_ancestor(self, commit: str) -> bool:
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
