"""The dispatcher's decisions as pure functions: what becomes of a claimed bead given its
claim, its loop's record and its process; which ready beads start; the backoff."""

from __future__ import annotations

from dataclasses import replace

import pytest

from procs.dispatcher.policy import (
    Act,
    Dispatch,
    LiveClaim,
    LoopView,
    Process,
    next_attempt,
    pick,
    resumes_counted,
    retry_delay_s,
    settle,
)

D = Dispatch("bd-1.1", "bd-1", 1, 3, "running")
CLAIM = LiveClaim("bd-1", "bd-1.1", 3)
RUNNING = Process("loops.4", 4321, True)


def loop(phase: str, reason: str = "") -> LoopView:
    return LoopView("bd-1.1", "bd-1", 1, phase, "c" * 40, "g" * 40, reason, {}, 0.0, 1.0)


def test_a_running_loop_is_waited_for_even_when_its_record_is_behind() -> None:
    assert settle(D, CLAIM, None, RUNNING, max_resumes=2).act is Act.WAIT
    assert settle(D, CLAIM, loop("implementing"), RUNNING, max_resumes=2).act is Act.WAIT


def test_an_ended_loop_lands_or_fails_whether_or_not_its_process_is_still_there() -> None:
    for process in (RUNNING, None):
        assert settle(D, CLAIM, loop("complete"), process, max_resumes=2).act is Act.LAND
        failed = settle(D, CLAIM, loop("failed", "no valid red"), process, max_resumes=2)
        assert (failed.act, failed.reason) == (Act.FAIL, "no valid red")


def test_a_claim_whose_loop_is_gone_is_resumed_then_failed_or_released_never_forgotten() -> None:
    assert settle(D, CLAIM, loop("auditing"), None, max_resumes=2).act is Act.RESUME
    assert settle(D, CLAIM, None, None, max_resumes=2).act is Act.RESUME  # never got going
    tired = Dispatch("bd-1.1", "bd-1", 1, 3, "running", resumes=2)
    gave_up = settle(tired, CLAIM, loop("auditing"), None, max_resumes=2)
    assert gave_up.act is Act.FAIL and "resumed 2 times" in gave_up.reason
    assert settle(tired, CLAIM, None, None, max_resumes=2).act is Act.RELEASE
    stopped = Process("loops.4", None, False)
    assert settle(D, CLAIM, loop("auditing"), stopped, max_resumes=2).act is Act.RESUME


def test_a_loop_that_moved_since_its_last_resume_is_resumed_again_not_given_up() -> None:
    """Deaths that a whole tree's restarts bring (zygote, factoryd) are not a crash loop
    while the loop stores transitions in between: only resumes without progress count."""
    moved = replace(loop("implementing"), updated_at=500.0)  # a transition at t=500
    tired = Dispatch("bd-1.1", "bd-1", 1, 3, "running", resumes=2, resumed_at=400.0)
    assert resumes_counted(tired, moved) == 0
    assert settle(tired, CLAIM, moved, None, max_resumes=2).act is Act.RESUME
    stuck = replace(tired, resumed_at=600.0)  # nothing stored since the last resume
    assert resumes_counted(stuck, moved) == 2
    gave_up = settle(stuck, CLAIM, moved, None, max_resumes=2)
    assert gave_up.act is Act.FAIL and "resumed 2 times without progress" in gave_up.reason
    never = Dispatch("bd-1.1", "bd-1", 1, 3, "running", resumes=2)  # no resume time known
    assert settle(never, CLAIM, moved, None, max_resumes=2).act is Act.FAIL
    # the whole tree restarted after its last start (factoryd started at 700): not its crash
    assert resumes_counted(stuck, moved, tree_started_at=700.0) == 0
    assert settle(stuck, CLAIM, moved, None, max_resumes=2, tree_started_at=700.0).act is (
        Act.RESUME)  # fmt: skip
    assert resumes_counted(stuck, moved, tree_started_at=550.0) == 2  # before: it counts


def test_only_the_live_claim_of_this_loop_counts() -> None:
    assert settle(D, None, loop("complete"), None, max_resumes=2).act is Act.FORGET
    other = LiveClaim("bd-1", "bd-1.2", 4)
    assert settle(D, other, loop("complete"), RUNNING, max_resumes=2).act is Act.FORGET


def test_pick_takes_free_slots_worth_in_order_skipping_busy_and_backed_off_beads() -> None:
    ready = ["a", "b", "c", "d", "e"]
    assert pick(ready, {"b"}, {"c": 200.0, "d": 50.0}, 100.0, 2) == ["a", "d"]
    assert pick(ready, set(), {}, 0.0, 0) == []
    assert pick(["a", "a", "b"], set(), {}, 0.0, 5) == ["a", "b"]


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.0), (1, 30.0), (2, 60.0), (3, 120.0),
                                                 (6, 900.0), (500, 900.0)])  # fmt: skip
def test_a_failing_bead_waits_longer_each_time_up_to_the_cap(failures: int, delay: float) -> None:
    assert retry_delay_s(failures, 30.0, 900.0) == delay


def test_a_new_attempt_is_past_every_known_one() -> None:
    assert next_attempt([]) == 1
    assert next_attempt([1, 3, 2]) == 4
