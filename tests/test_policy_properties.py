"""Property tests of the restart policy over random exit sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import policy
from supervisor.policy import (
    ChildState,
    ExitKind,
    ExitReason,
    Remove,
    Restart,
    Shutdown,
    SupervisorState,
    decide_exit,
)
from supervisor.spec import RestartType, Strategy, SupervisorFlags

STATIC = [Strategy.ONE_FOR_ONE, Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE]
REASONS = st.sampled_from(
    [policy.NORMAL, policy.SHUTDOWN, ExitReason(ExitKind.ABNORMAL, "exit code 1")]
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SupervisorState, list[tuple[int, ExitReason, float]]]:
    n = draw(st.integers(min_value=1, max_value=6))
    restarts = draw(st.lists(st.sampled_from(list(RestartType)), min_size=n, max_size=n))
    flags = SupervisorFlags(
        strategy=draw(st.sampled_from(STATIC)),
        intensity=draw(st.integers(min_value=0, max_value=4)),
        period_s=draw(st.floats(min_value=0.5, max_value=20)),
    )
    children = tuple(ChildState(f"c{i}", r, running=True) for i, r in enumerate(restarts))
    steps = draw(
        st.lists(st.tuples(st.integers(0, 100), REASONS, st.floats(0, 5)), min_size=1, max_size=30)
    )
    return SupervisorState(flags=flags, children=children), steps


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_policy_invariants_over_random_exit_sequences(scenario) -> None:
    state, steps = scenario
    now = 0.0
    for pick, reason, dt in steps:
        running = [c for c in state.children if c.running]
        if not running:
            return
        failed = running[pick % len(running)]
        before = {c.id: c for c in state.children}
        now += dt
        state, actions = decide_exit(state, failed.id, reason, now)
        ids = {c.id for c in state.children}
        assert not any(c.id == failed.id and c.running for c in state.children)
        if any(isinstance(a, Shutdown) for a in actions):
            # no child is significant here, so only the intensity can end it
            assert actions == [Shutdown(policy.INTENSITY_EXCEEDED)]
            assert len(state.restarts) == state.flags.intensity + 1
            assert all(now - t <= state.flags.period_s for t in state.restarts)
            return
        assert len(state.restarts) <= state.flags.intensity
        for action in actions:
            if isinstance(action, Restart):
                assert state.restarts[-1] == now
                assert all(now - t <= state.flags.period_s for t in state.restarts)
                assert policy.should_restart(failed.restart, reason)
                assert failed.id in action.start and failed.id not in action.terminate
                assert all(before[c].running for c in action.terminate)
                assert set(action.start) <= ids
                assert len(set(action.start)) == len(action.start)
                if state.flags.strategy is Strategy.ONE_FOR_ONE:
                    assert action.terminate == () and action.start == (failed.id,)
                order = [c.id for c in state.children]
                assert list(action.start) == sorted(action.start, key=order.index)
                for cid in action.start:  # the runtime starts them
                    state = policy.set_running(state, cid, True)
                for cid in set(action.terminate) - set(action.start):
                    assert before[cid].restart is RestartType.TEMPORARY
            elif isinstance(action, Remove):
                assert action.child_id not in ids
                assert (
                    before[action.child_id].restart is RestartType.TEMPORARY
                    or action.child_id != failed.id
                )
        if not policy.should_restart(failed.restart, reason):
            assert not any(isinstance(a, Restart) for a in actions)
