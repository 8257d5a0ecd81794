"""The gauntlet as the loop's Verifying check (procs/loop/driver.py's `Gauntlet`
protocol: `check(state) -> None | why`), without importing the loop.

    LoopGauntlet(config, stages).check(state) -> None (passed) | feedback text

The change judged is the last green commit (state.green_commit) to the workspace's HEAD
(the folded red test and implementation); after a rebase, golden (state.golden_hash) to
HEAD. The feedback is GauntletResult.feedback(): each rejecting stage's reason, then
each finding as `path:line: [class] message`, which the loop hands the implementer.
A change that cannot be read (ChangeError) is a rejection naming why: the loop never
takes an unjudged change for a judged one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from procs.gauntlet._change import Change, ChangeError
from procs.gauntlet._config import GauntletConfig
from procs.gauntlet._model import GauntletResult, Stage, Verdict
from procs.gauntlet._runner import run_gauntlet


class LoopState(Protocol):
    """What the check reads of procs.loop's FactoryLoopState."""

    @property
    def workspace(self) -> str: ...

    @property
    def green_commit(self) -> str: ...

    @property
    def golden_hash(self) -> str: ...

    @property
    def rebased(self) -> bool: ...


class LoopGauntlet:
    """`stages`: default all seven. `last` holds the latest result (for history/logs)."""

    def __init__(self, config: GauntletConfig, stages: Sequence[Stage] | None = None, *,
                 run_all: bool = False) -> None:  # fmt: skip
        self.config = config
        self.stages = stages
        self.run_all = run_all
        self.last: GauntletResult | None = None

    def check(self, state: LoopState) -> str | None:
        """None when the change passes; else the feedback. Blocks for the stages' time."""
        base = state.golden_hash if state.rebased or not state.green_commit \
            else state.green_commit  # fmt: skip
        try:
            change = Change.load(Path(state.workspace), base)
        except ChangeError as exc:
            return f"gauntlet: the change cannot be read: {exc}"
        self.last = run_gauntlet(change, self.config, self.stages, run_all=self.run_all)
        if self.last.verdict is Verdict.PASS:
            return None
        return self.last.feedback()
