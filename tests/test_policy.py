"""Pure restart policy: strategies, restart types, intensity, auto_shutdown. No processes."""

from __future__ import annotations

import pytest

from supervisor.policy import (
    AUTO_SHUTDOWN,
    INTENSITY_EXCEEDED,
    NORMAL,
    SHUTDOWN,
    ChildState,
    ExitKind,
    ExitReason,
    Remove,
    Restart,
    Shutdown,
    SupervisorState,
    add_restart,
    decide_exit,
    reason_from_wait_status,
    should_restart,
)
from supervisor.spec import AutoShutdown, RestartType, Strategy, SupervisorFlags

CRASH = ExitReason(ExitKind.ABNORMAL, "exit code 1")
P, T, TMP = RestartType.PERMANENT, RestartType.TRANSIENT, RestartType.TEMPORARY


def state(
    strategy: Strategy,
    *children: tuple[str, RestartType],
    intensity: int = 3,
    auto: AutoShutdown = AutoShutdown.NEVER,
    significant: frozenset[str] = frozenset(),
) -> SupervisorState:
    flags = SupervisorFlags(
        strategy=strategy, intensity=intensity, period_s=10.0, auto_shutdown=auto
    )
    return SupervisorState(
        flags=flags,
        children=tuple(ChildState(i, r, i in significant, running=True) for i, r in children),
    )


@pytest.mark.parametrize(
    ("restart", "reason", "expected"),
    [
        (P, NORMAL, True),
        (P, SHUTDOWN, True),
        (P, CRASH, True),
        (T, NORMAL, False),
        (T, SHUTDOWN, False),
        (T, CRASH, True),
        (TMP, NORMAL, False),
        (TMP, SHUTDOWN, False),
        (TMP, CRASH, False),
    ],
)
def test_should_restart_follows_otp_do_restart(restart, reason, expected) -> None:
    assert should_restart(restart, reason) is expected


def test_one_for_one_restarts_only_the_failed_child() -> None:
    s = state(Strategy.ONE_FOR_ONE, ("a", P), ("b", P), ("c", P))
    s2, actions = decide_exit(s, "b", CRASH, now=100.0)
    assert actions == [Restart(terminate=(), start=("b",))]
    assert s2.child("b").running is False
    assert s2.restarts == (100.0,)


def test_one_for_all_terminates_others_in_reverse_then_starts_all_in_order() -> None:
    s = state(Strategy.ONE_FOR_ALL, ("a", P), ("b", P), ("c", P), ("d", P))
    _, actions = decide_exit(s, "b", CRASH, now=1.0)
    assert actions == [Restart(terminate=("d", "c", "a"), start=("a", "b", "c", "d"))]


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it() -> None:
    s = state(Strategy.REST_FOR_ONE, ("a", P), ("b", P), ("c", P), ("d", P))
    _, actions = decide_exit(s, "b", CRASH, now=1.0)
    assert actions == [Restart(terminate=("d", "c"), start=("b", "c", "d"))]


def test_one_for_all_drops_temporary_siblings_instead_of_restarting_them() -> None:
    s = state(Strategy.ONE_FOR_ALL, ("a", P), ("tmp", TMP), ("c", P))
    s2, actions = decide_exit(s, "a", CRASH, now=1.0)
    assert actions == [Restart(terminate=("c", "tmp"), start=("a", "c")), Remove("tmp")]
    assert [c.id for c in s2.children] == ["a", "c"]


def test_transient_normal_exit_is_not_restarted_but_kept() -> None:
    s = state(Strategy.ONE_FOR_ONE, ("t", T))
    s2, actions = decide_exit(s, "t", NORMAL, now=1.0)
    assert actions == []
    assert s2.child("t").running is False
    assert s2.restarts == ()


def test_temporary_child_is_removed_whatever_the_reason() -> None:
    s = state(Strategy.ONE_FOR_ONE, ("x", TMP), ("y", P))
    s2, actions = decide_exit(s, "x", CRASH, now=1.0)
    assert actions == [Remove("x")]
    assert [c.id for c in s2.children] == ["y"]


def test_simple_one_for_one_forgets_a_dynamic_child_that_is_not_restarted() -> None:
    s = state(Strategy.SIMPLE_ONE_FOR_ONE, ("loop.1", T), ("loop.2", T))
    s2, actions = decide_exit(s, "loop.1", NORMAL, now=1.0)
    assert actions == [Remove("loop.1")]
    _, crash_actions = decide_exit(s2, "loop.2", CRASH, now=1.0)
    assert crash_actions == [Restart(terminate=(), start=("loop.2",))]


def test_intensity_exceeded_escalates_with_shutdown() -> None:
    s = state(Strategy.ONE_FOR_ONE, ("a", P), intensity=2)
    s, a1 = decide_exit(s, "a", CRASH, now=0.0)
    s, a2 = decide_exit(s, "a", CRASH, now=1.0)
    s, a3 = decide_exit(s, "a", CRASH, now=2.0)
    assert isinstance(a1[0], Restart) and isinstance(a2[0], Restart)
    assert a3 == [Shutdown(INTENSITY_EXCEEDED)]


def test_intensity_counts_only_restarts_inside_the_period() -> None:
    ok, recent = add_restart((0.0, 5.0), intensity=2, period_s=10.0, now=12.0)
    assert ok and recent == (5.0, 12.0)
    ok, _ = add_restart((5.0, 6.0), intensity=2, period_s=10.0, now=12.0)
    assert not ok


def test_intensity_period_is_inclusive_as_in_otp() -> None:
    ok, recent = add_restart((2.0,), intensity=1, period_s=10.0, now=12.0)
    assert not ok and recent == (2.0, 12.0)


def test_intensity_zero_means_no_restart_at_all() -> None:
    s = state(Strategy.ONE_FOR_ONE, ("a", P), intensity=0)
    _, actions = decide_exit(s, "a", CRASH, now=0.0)
    assert actions == [Shutdown(INTENSITY_EXCEEDED)]


def test_any_significant_child_ending_shuts_the_supervisor_down() -> None:
    s = state(
        Strategy.ONE_FOR_ONE,
        ("job", T),
        ("svc", P),
        auto=AutoShutdown.ANY_SIGNIFICANT,
        significant=frozenset({"job"}),
    )
    _, actions = decide_exit(s, "job", NORMAL, now=0.0)
    assert actions == [Shutdown(AUTO_SHUTDOWN)]


def test_all_significant_waits_for_the_last_significant_child() -> None:
    s = state(
        Strategy.ONE_FOR_ONE,
        ("j1", T),
        ("j2", TMP),
        auto=AutoShutdown.ALL_SIGNIFICANT,
        significant=frozenset({"j1", "j2"}),
    )
    s, first = decide_exit(s, "j1", NORMAL, now=0.0)
    assert first == []
    _, second = decide_exit(s, "j2", CRASH, now=0.0)
    assert second == [Remove("j2"), Shutdown(AUTO_SHUTDOWN)]


def test_significant_transient_that_crashes_is_restarted_not_shut_down() -> None:
    s = state(
        Strategy.ONE_FOR_ONE,
        ("job", T),
        auto=AutoShutdown.ANY_SIGNIFICANT,
        significant=frozenset({"job"}),
    )
    _, actions = decide_exit(s, "job", CRASH, now=0.0)
    assert actions == [Restart(terminate=(), start=("job",))]


def test_wait_status_mapping() -> None:
    assert reason_from_wait_status(0) == NORMAL
    assert reason_from_wait_status(3) == ExitReason(ExitKind.ABNORMAL, "exit code 3")
    assert reason_from_wait_status(-9) == ExitReason(ExitKind.ABNORMAL, "killed by SIGKILL")
