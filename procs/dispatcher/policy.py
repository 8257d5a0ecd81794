"""What the dispatcher does about one claimed bead, and which ready beads it starts: pure
functions over frozen data, tested without processes (STYLE rule 1).

    settle(dispatch, claim, loop, process, max_resumes) -> Action
    resumes_counted(dispatch, loop, tree_started_at) -> the resumes that count
    pick(ready, busy, not_before, now, free) -> [bead_id, ...]
    retry_delay_s(failures, base_s, max_s) -> seconds

`settle` reads three witnesses, each from its owner: the bead's live claim (the beads
service), the loop's last persisted state (loops.sqlite3, written by the loop process)
and its process (factoryd's `loops` supervisor). A signal only says "look": the same
answer comes out whether LoopComplete arrived or was missed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Act(enum.StrEnum):
    FORGET = "forget"  # our claim never came to be (or another loop's is live now)
    WAIT = "wait"  # the loop runs: watch its process
    LAND = "land"  # the loop is complete: close the bead once its commit is on golden
    FAIL = "fail"  # the loop failed, or died past its resumes: fail the bead
    RESUME = "resume"  # the loop's process is gone mid-loop: start it again, same loop id
    RELEASE = "release"  # the loop never ran and cannot be started: open the bead again


@dataclass(frozen=True)
class Dispatch:
    """The dispatcher's record of one loop it claimed a bead for (records.py)."""

    loop_id: str
    bead_id: str
    attempt: int
    generation: int | None
    state: str  # "claiming" (asked beads; no answer recorded yet), "running", "ended"
    resumes: int = 0
    child_id: str = ""
    resumed_at: float | None = None  # wall clock of its last start (None: not recorded)


@dataclass(frozen=True)
class LiveClaim:
    """The beads service's live claim on a bead."""

    bead_id: str
    loop_id: str
    generation: int


@dataclass(frozen=True)
class LoopView:
    """What loops.sqlite3 says of a loop: its phase, its last green commit, the golden
    head its lander reported (`pushed`: the Pushed event's head, which is the merge
    queue's landed commit where it squashed), its failure reason and counters."""

    loop_id: str
    bead_id: str
    attempt: int
    phase: str
    green_commit: str
    golden_hash: str
    reason: str
    counters: Mapping[str, int]
    created_at: float
    updated_at: float
    pushed: str = ""
    workspace: str = ""

    @property
    def terminal(self) -> bool:
        return self.phase in ("complete", "failed")

    @property
    def landed_commit(self) -> str:
        """What must be an ancestor of golden HEAD for the bead to be done."""
        return self.pushed or self.green_commit


@dataclass(frozen=True)
class Process:
    """A loop child of factoryd's `loops` supervisor, by the --loop-id it was started with
    (and the --bead, when its start args name one)."""

    child_id: str
    pid: int | None
    running: bool
    bead_id: str = ""


@dataclass(frozen=True)
class Action:
    act: Act
    reason: str = ""


def settle(
    dispatch: Dispatch,
    claim: LiveClaim | None,
    loop: LoopView | None,
    process: Process | None,
    *,
    max_resumes: int,
    tree_started_at: float | None = None,
) -> Action:
    """The next step for a live dispatch (state claiming or running). `tree_started_at`
    is when the running factoryd started (resumes_counted)."""
    if claim is None or claim.loop_id != dispatch.loop_id:
        held = "nobody" if claim is None else f"loop {claim.loop_id}"
        reason = f"{dispatch.bead_id} is claimed by {held}, not {dispatch.loop_id}"
        return Action(Act.FORGET, reason)
    if loop is not None and loop.phase == "complete":
        return Action(Act.LAND)
    if loop is not None and loop.phase == "failed":
        return Action(Act.FAIL, loop.reason or "the loop failed")
    if process is not None and process.running:
        return Action(Act.WAIT)
    resumes = resumes_counted(dispatch, loop, tree_started_at)
    if resumes < max_resumes:
        return Action(Act.RESUME, "its process is gone" if process is None else "it is stopped")
    if loop is None:
        return Action(Act.RELEASE, f"the loop never started ({dispatch.resumes} starts failed)")
    return Action(
        Act.FAIL, f"the loop died in {loop.phase} and was resumed {resumes} times without progress"
    )


def resumes_counted(dispatch: Dispatch, loop: LoopView | None,
                    tree_started_at: float | None = None) -> int:  # fmt: skip
    """The resumes that count against max_resumes: none once the loop stored a transition
    after its last start, or once the whole tree restarted after it (factoryd started
    later: a zygote or factoryd death took every loop down, not a crash of this one). A
    loop that keeps moving is not crash-looping: the deaths a whole tree's restarts
    bring (bench/chaos.py) gave up loops that were getting on, and their work with them;
    a loop in a long phase (Pushing, waiting for the queue) stores nothing meanwhile."""
    since = dispatch.resumed_at
    if since is not None and loop is not None and loop.updated_at > since:
        return 0
    if since is not None and tree_started_at is not None and tree_started_at > since:
        return 0
    return dispatch.resumes


def pick(
    ready: Sequence[str],
    busy: set[str],
    not_before: Mapping[str, float],
    now: float,
    free: int,
) -> list[str]:
    """Up to `free` beads of `ready` (already in dispatch order) to start now: none that
    has a live loop, none in its backoff."""
    chosen: list[str] = []
    for bead in ready:
        if len(chosen) >= free:
            break
        if bead in busy or bead in chosen or not_before.get(bead, 0.0) > now:
            continue
        chosen.append(bead)
    return chosen


def retry_delay_s(failures: int, base_s: float, max_s: float) -> float:
    """How long a bead waits after its `failures`-th failed attempt: base, 2 base, 4 base,
    ... at most `max_s` (no spawn storm: a bead that keeps failing is tried ever slower)."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, base_s * 2 ** min(failures - 1, 30)))


def next_attempt(known: Sequence[int]) -> int:
    """A fresh attempt number for a bead: one past every attempt any record knows, so a
    loop id (BEAD.ATTEMPT) is never reused, even for a loop whose start failed."""
    return max(known, default=0) + 1
