"""The git the synapse and its mutators run: suspects, the culprit's diff, a fix's commit.

Every call is bounded (GIT_TIMEOUT_S) and raises GitFailed with git's words. Commits are
made with a fixed identity and no user or system config, so they read the same anywhere.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 60.0
IDENTITY = {"GIT_AUTHOR_NAME": "factory synapse", "GIT_AUTHOR_EMAIL": "synapse@factory.local",
            "GIT_COMMITTER_NAME": "factory synapse",
            "GIT_COMMITTER_EMAIL": "synapse@factory.local"}  # fmt: skip


class GitFailed(RuntimeError):
    """A git command failed or timed out; the message names it and says why."""


def run(repo: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_TERMINAL_PROMPT": "0", **IDENTITY}  # fmt: skip
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True,
                              text=True, env=env, timeout=GIT_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitFailed(f"git {' '.join(args)[:120]}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip()[:500]
        raise GitFailed(f"git {' '.join(args)[:120]}: {why or f'exit {done.returncode}'}")
    return done.stdout


def suspects(repo: Path, bad: str, good: str | None, limit: int) -> list[str]:
    """First-parent commits up to `bad`, oldest first: `good` (checked again: the
    environment may have turned it red) and the commits after it, or, when `good` is
    None, not an ancestor, or more than `limit` commits back, the last `limit`."""
    known = good is not None and good != bad and is_ancestor(repo, good, bad)
    spec = [f"{good}..{bad}"] if known else [bad]
    out = run(repo, "rev-list", "--first-parent", f"--max-count={limit}", *spec)
    after = list(reversed(out.split()))
    return [good, *after] if known and good is not None and len(after) < limit else after


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    try:
        run(repo, "merge-base", "--is-ancestor", ancestor, descendant)
    except GitFailed:
        return False
    return True


def show(repo: Path, commit: str, max_chars: int) -> str:
    """The commit's message and diff, cut to `max_chars`."""
    return run(repo, "show", "--no-color", "--format=%H %s", commit)[:max_chars]


def checkout(workspace: Path, commit: str) -> None:
    """Put the working copy exactly at `commit` (detached; what was there is gone)."""
    run(workspace, "checkout", "-q", "-f", "--detach", commit)
    run(workspace, "clean", "-q", "-f", "-d", "-x")


def apply(workspace: Path, diff: str) -> None:
    """Apply a unified diff to the working copy and index; all or nothing."""
    run(workspace, "apply", "--index", "--recount", "-", stdin=diff)


def commit_all(workspace: Path, message: str) -> str:
    run(workspace, "commit", "-q", "--no-verify", "-m", message)
    return run(workspace, "rev-parse", "HEAD").strip()
