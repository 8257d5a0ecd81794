"""The verification gauntlet: nothing lands that cheats, and it says why.

A library the loop (Verifying) and the merge queue call, and a CLI for people and checks
(`python -m procs.gauntlet --workspace WS --base REV [--stage NAME]... [--all] [--json]`).
It judges the change from REV to the workspace's HEAD plus uncommitted work, snapshotted
once (`Change.load`), through stages in order:

    compile               byte-compile every changed .py file (sandbox)
    unit, integration     the project's commands (sandbox, workspace read-only)
    lint                  ruff over the changed files (sandbox)
    cheat_detection       static rules (ast + unidiff) and REV's tests re-run against the
                          patched code (sandbox)
    llm_judge             the router's judge role: PASS/FAIL with reasons, strict schema
    architectural_review  the router's review role, for > 100 changed lines or a new module

It stops at the first rejecting stage unless run_all. Each stage is a `Stage` (protocol,
_model.py); a crash or a timeout rejects with that reason; a stage that cannot judge
(no model, no tool, nothing to check) is skipped with its reason, never passed.
Settings: _config.py ([tool.factory.gauntlet] at REV, then the operator's [gauntlet]).

Layout: _model (Stage, results), _change (the snapshot), _config, _runner, _sandboxed
and _exec_stages (tools in the sandbox), _cheat_stage (cheat_detection: _cheat_tests and
_carried (what a test refactor keeps), _cheat_code with _handlers (empty_catch,
ignored_errors) and _detection (test_detection), _hardcoded, _cheat_harness,
_cheat_dynamic), _llm_stages, _paths, and _loop_check (LoopGauntlet: the loop's Verifying
check, check(state) -> None | feedback).
"""

from procs.gauntlet._change import Change, ChangeError, FileChange
from procs.gauntlet._cheat_stage import CLASSES, CheatDetection, static_findings
from procs.gauntlet._config import STAGE_NAMES, GauntletConfig, GauntletConfigError
from procs.gauntlet._config import from_table as config_from_table
from procs.gauntlet._config import load as load_config
from procs.gauntlet._exec_stages import CommandStage, CompileStage, LintStage
from procs.gauntlet._llm_stages import ArchitecturalReview, LlmJudge, parse_answer
from procs.gauntlet._loop_check import LoopGauntlet
from procs.gauntlet._model import (
    Finding,
    GauntletResult,
    Stage,
    StageOutcome,
    StageResult,
    Verdict,
)
from procs.gauntlet._runner import (
    check_workspace,
    default_stages,
    run_gauntlet,
    run_stage,
    select,
)

__all__ = [
    "CLASSES",
    "STAGE_NAMES",
    "ArchitecturalReview",
    "Change",
    "ChangeError",
    "CheatDetection",
    "CommandStage",
    "CompileStage",
    "FileChange",
    "Finding",
    "GauntletConfig",
    "GauntletConfigError",
    "GauntletResult",
    "LintStage",
    "LlmJudge",
    "LoopGauntlet",
    "Stage",
    "StageOutcome",
    "StageResult",
    "Verdict",
    "check_workspace",
    "config_from_table",
    "default_stages",
    "load_config",
    "parse_answer",
    "run_gauntlet",
    "run_stage",
    "select",
    "static_findings",
]
