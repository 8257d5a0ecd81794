"""OTP restart policy as pure functions over frozen state (after supervisor.erl).

Nothing here touches a process. The runtime (`supervisor.tree`) feeds in exits and
carries out the actions returned:

    decide_exit(state, child_id, reason, now) -> (state, actions)

`now` is monotonic seconds, passed in so tests need no clock.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from enum import StrEnum

from supervisor.spec import AutoShutdown, RestartType, Strategy, SupervisorFlags


class ExitKind(StrEnum):
    NORMAL = "normal"  # exit code 0
    SHUTDOWN = "shutdown"  # stopped by its supervisor (or a supervisor giving up)
    ABNORMAL = "abnormal"  # non-zero exit, killed by a signal, failed to start


@dataclass(frozen=True)
class ExitReason:
    """Why a child ended: its kind plus the detail an operator reads."""

    kind: ExitKind
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else str(self.kind)


NORMAL = ExitReason(ExitKind.NORMAL)
SHUTDOWN = ExitReason(ExitKind.SHUTDOWN)
INTENSITY_EXCEEDED = ExitReason(ExitKind.SHUTDOWN, "reached max restart intensity")
AUTO_SHUTDOWN = ExitReason(ExitKind.SHUTDOWN, "auto_shutdown")


def reason_from_wait_status(exit_code: int) -> ExitReason:
    """Map `os.waitstatus_to_exitcode` output to an OTP-style reason."""
    if exit_code == 0:
        return NORMAL
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return ExitReason(ExitKind.ABNORMAL, f"killed by {name}")
    return ExitReason(ExitKind.ABNORMAL, f"exit code {exit_code}")


@dataclass(frozen=True)
class ChildState:
    id: str
    restart: RestartType
    significant: bool = False
    running: bool = False


@dataclass(frozen=True)
class SupervisorState:
    flags: SupervisorFlags
    children: tuple[ChildState, ...] = ()  # in start order
    restarts: tuple[float, ...] = ()  # monotonic times of restarts inside the period

    def index(self, child_id: str) -> int:
        for i, child in enumerate(self.children):
            if child.id == child_id:
                return i
        raise KeyError(child_id)

    def child(self, child_id: str) -> ChildState:
        return self.children[self.index(child_id)]


@dataclass(frozen=True)
class Restart:
    """Terminate `terminate` (in that order), then start `start` (in that order)."""

    terminate: tuple[str, ...]
    start: tuple[str, ...]


@dataclass(frozen=True)
class Remove:
    """Forget a child that will not come back (temporary, or a dynamic child)."""

    child_id: str


@dataclass(frozen=True)
class Shutdown:
    """Terminate all children in reverse start order, then the supervisor ends."""

    reason: ExitReason


Action = Restart | Remove | Shutdown


def should_restart(restart: RestartType, reason: ExitReason) -> bool:
    """OTP's do_restart/3: one clause per restart type."""
    if restart is RestartType.PERMANENT:
        return True
    if restart is RestartType.TRANSIENT:
        return reason.kind is ExitKind.ABNORMAL
    return False


def add_restart(
    restarts: tuple[float, ...], intensity: int, period_s: float, now: float
) -> tuple[bool, tuple[float, ...]]:
    """OTP's add_restart/3: record one restart; False once more than `intensity` fall
    inside the last `period_s` seconds (inclusive, as OTP's `Now =< Then + Period`)."""
    recent = (*(t for t in restarts if now - t <= period_s), now)
    return len(recent) <= intensity, recent


def with_child(state: SupervisorState, child: ChildState) -> SupervisorState:
    children = tuple(child if c.id == child.id else c for c in state.children)
    return replace(state, children=children)


def without_child(state: SupervisorState, child_id: str) -> SupervisorState:
    return replace(state, children=tuple(c for c in state.children if c.id != child_id))


def add_child(state: SupervisorState, child: ChildState) -> SupervisorState:
    return replace(state, children=(*state.children, child))


def set_running(state: SupervisorState, child_id: str, running: bool) -> SupervisorState:
    return with_child(state, replace(state.child(child_id), running=running))


def _auto_shutdown(state: SupervisorState) -> bool:
    mode = state.flags.auto_shutdown
    if mode is AutoShutdown.ANY_SIGNIFICANT:
        return True
    if mode is AutoShutdown.ALL_SIGNIFICANT:
        return not any(c.significant and c.running for c in state.children)
    return False


def _restart_set(state: SupervisorState, child_id: str) -> Restart:
    """OTP's restart/3, one branch per strategy."""
    strategy = state.flags.strategy
    if strategy in (Strategy.ONE_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE):
        return Restart(terminate=(), start=(child_id,))
    at = state.index(child_id)
    affected = state.children if strategy is Strategy.ONE_FOR_ALL else state.children[at:]
    others = [c for c in affected if c.id != child_id]
    terminate = tuple(c.id for c in reversed(others) if c.running)
    start = tuple(
        c.id for c in affected if c.id == child_id or c.restart is not RestartType.TEMPORARY
    )
    return Restart(terminate=terminate, start=start)


def decide_exit(
    state: SupervisorState, child_id: str, reason: ExitReason, now: float
) -> tuple[SupervisorState, list[Action]]:
    """A child ended on its own (or failed to start). Decide what the supervisor does.

    Returns the new state and the actions to carry out, in order. The child is marked
    not running; a Restart names every child to terminate and start.
    """
    child = state.child(child_id)
    state = set_running(state, child_id, False)
    dynamic = state.flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE

    if not should_restart(child.restart, reason):
        actions: list[Action] = []
        if child.restart is RestartType.TEMPORARY or dynamic:
            state = without_child(state, child_id)
            actions.append(Remove(child_id))
        if child.significant and _auto_shutdown(state):
            actions.append(Shutdown(AUTO_SHUTDOWN))
        return state, actions

    ok, restarts = add_restart(state.restarts, state.flags.intensity, state.flags.period_s, now)
    state = replace(state, restarts=restarts)
    if not ok:
        return state, [Shutdown(INTENSITY_EXCEEDED)]
    plan = _restart_set(state, child_id)
    # Temporary siblings terminated by the restart are dropped, as in OTP.
    dropped = [
        c.id
        for c in state.children
        if c.id in plan.terminate and c.restart is RestartType.TEMPORARY
    ]
    for dead in dropped:
        state = without_child(state, dead)
    return state, [plan, *(Remove(d) for d in dropped)]
