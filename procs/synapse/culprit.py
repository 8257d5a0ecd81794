"""Finding the culprit: the bisection plan (bisect.py) carried out in k workspaces.

    find_culprit(repo, bad, good, settings, runtime=, state=, name=, owner_pid=,
                 cancelled=) -> Found

The suspects are golden's first-parent commits from the last commit known green (or the
last `max_suspects` when none is known) up to `bad`, the red commit. The known green one
is a suspect too: when it is red now, no commit is the culprit, and Found says so. k
workspaces are made once (procs/synapse/workspace.py) and reused by every round: each
round checks out its k commits, one per workspace, and runs the suite in each at once,
in the sandbox, with the suite's timeout. A round blocks about one suite run; the rounds
are at most ceil(log_{k+1} n). The workspaces are given back at the end, whatever
happened. Raises Cancelled (between rounds, when `cancelled` is set), GitFailed,
WorkspaceUnavailable, TrialUnavailable.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from procs.synapse import git, workspace
from procs.synapse.bisect import bisect
from procs.synapse.trial import run_suite


class Cancelled(Exception):
    """The generation was stopped while bisecting."""


@dataclass(frozen=True)
class BisectSettings:
    workers: int
    max_suspects: int
    test_command: tuple[str, ...]
    suite_timeout_s: float
    sandbox: str


@dataclass(frozen=True)
class Found:
    culprit: str  # "": the commit known green fails now too (see `note`)
    suspects: int
    rounds: int
    runs: int
    workers: int
    duration_ms: float
    note: str = ""


def find_culprit(repo: Path, bad: str, good: str | None, s: BisectSettings, *, runtime: Path,
                 state: Path, name: str, owner_pid: int,
                 cancelled: threading.Event) -> Found:  # fmt: skip
    started = time.monotonic()
    commits = git.suspects(repo, bad, good, s.max_suspects)
    if not commits or commits[-1] != bad:
        raise git.GitFailed(f"{bad} is not a first-parent commit of {repo}")
    k = min(s.workers, len(commits) - 1)
    if k < 1:  # one suspect: the red commit itself
        return Found(bad, len(commits), 0, 0, 0, (time.monotonic() - started) * 1000)
    leases: list[workspace.Lease] = []
    try:
        for j in range(k):
            leases.append(workspace.make(runtime, state, f"bisect-{name}-{j}", repo, owner_pid))
        with ThreadPoolExecutor(k, thread_name_prefix="bisect") as pool:

            def test_round(points: list[int]) -> Mapping[int, bool]:
                if cancelled.is_set():
                    raise Cancelled()
                runs = [pool.submit(_green_at, lease.path, commits[i], s)
                        for lease, i in zip(leases, points, strict=False)]  # fmt: skip
                return {i: run.result() for i, run in zip(points, runs, strict=True)}

            out = bisect(len(commits), k, test_round)
    finally:
        for lease in leases:
            # owned by this process: the manager reaps it when it exits, if not now
            with contextlib.suppress(workspace.WorkspaceUnavailable):
                workspace.free(runtime, lease)
    ms = (time.monotonic() - started) * 1000
    if commits[out.culprit] == good:
        note = (f"the last green commit {good[:12]} fails now too: no commit is the culprit "
                "(the environment changed, or the suite is flaky)")  # fmt: skip
        return Found("", len(commits), out.rounds, out.tested, k, ms, note)
    return Found(commits[out.culprit], len(commits), out.rounds, out.tested, k, ms)


def _green_at(path: Path, commit: str, s: BisectSettings) -> bool:
    git.checkout(path, commit)
    return run_suite(path, s.test_command, timeout_s=s.suite_timeout_s, mode=s.sandbox).green
