"""The gauntlet's run: its stages in order, stopping at the first rejection (unless
`run_all`), each timed; a stage that raises rejects the change, naming the exception.

    default_stages() -> [Stage]                      the seven, in the seed's order
    run_gauntlet(change, config, stages, ...) -> GauntletResult
    check_workspace(workspace, base, ...) -> GauntletResult   snapshot, config, run
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from procs.gauntlet import _config
from procs.gauntlet._change import Change
from procs.gauntlet._cheat_stage import CheatDetection
from procs.gauntlet._config import GauntletConfig
from procs.gauntlet._exec_stages import CommandStage, CompileStage, LintStage
from procs.gauntlet._llm_stages import ArchitecturalReview, LlmJudge
from procs.gauntlet._model import GauntletResult, Stage, StageOutcome, StageResult, Verdict
from procs.sandbox import SandboxUnavailable


def default_stages() -> list[Stage]:
    return [
        CompileStage(), CommandStage("unit"), CommandStage("integration"), LintStage(),
        CheatDetection(), LlmJudge(), ArchitecturalReview(),
    ]  # fmt: skip


def run_stage(stage: Stage, change: Change, config: GauntletConfig) -> StageResult:
    """One stage, timed; a configured skip is honoured, a crash is a rejection."""
    began = time.monotonic()
    reason = config.skip.get(stage.name)
    if reason is not None:
        outcome = StageOutcome.skipped(f"skipped by configuration: {reason}")
    else:
        try:
            outcome = stage.run(change, config)
        except SandboxUnavailable as exc:
            outcome = StageOutcome.rejected(f"cannot run the stage sandboxed: {exc}")
        except Exception as exc:  # noqa: BLE001 -- a crashing stage rejects, never passes
            outcome = StageOutcome.rejected(f"stage crashed: {type(exc).__name__}: {exc}")
    return StageResult(stage.name, outcome, (time.monotonic() - began) * 1000.0)


def run_gauntlet(
    change: Change,
    config: GauntletConfig,
    stages: Sequence[Stage] | None = None,
    *,
    run_all: bool = False,
) -> GauntletResult:
    """Run `stages` (default: all seven) on `change`; stop at the first reject unless
    `run_all`. Blocks for the stages' time: each stage that runs code is bounded by
    config.timeout_s, each model call by config.llm_timeout_s."""
    results = []
    for stage in default_stages() if stages is None else stages:
        result = run_stage(stage, change, config)
        results.append(result)
        if result.outcome.verdict is Verdict.REJECT and not run_all:
            break
    return GauntletResult(tuple(results))


def select(names: Sequence[str]) -> list[Stage]:
    """The default stages named in `names`, in the gauntlet's order; ValueError names an
    unknown one."""
    stages = default_stages()
    known = [stage.name for stage in stages]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {known}")
    return [stage for stage in stages if stage.name in names]


def check_workspace(
    workspace: Path,
    base: str,
    *,
    config_file: Path | None = None,
    stages: Sequence[str] = (),
    run_all: bool = False,
    requirements: str | None = None,
) -> GauntletResult:
    """Snapshot the change from `base`, load the config (pyproject at REV, then
    `config_file`) and run the gauntlet. Raises ChangeError, GauntletConfigError,
    ValueError (unknown stage): a usage or setup error, not a verdict."""
    change = Change.load(Path(workspace), base)
    config = _config.load(change.workspace, change.base, config_file)
    if requirements is not None:
        config = _config.from_table({"requirements": requirements}, "--requirements", config)
    chosen = select(stages) if stages else None
    return run_gauntlet(change, config, chosen, run_all=run_all)
