"""The stages that run tools over the change: compile, unit, integration, lint.

Each runs in the sandbox with the workspace read-only (_sandboxed.py) and the config's
timeout; a timeout rejects, naming it. A missing tool is a skip with its reason.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import PurePosixPath

from procs.gauntlet._change import Change
from procs.gauntlet._config import GauntletConfig
from procs.gauntlet._model import Finding, StageOutcome
from procs.gauntlet._sandboxed import run_readonly

# Byte-compiles each file named on the command line in memory (nothing written) and prints
# `path:line: message` for each that does not compile.
_COMPILE = """\
import sys
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as handle:
            compile(handle.read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        bad += 1
        print(f"{path}:{exc.lineno or 0}: {type(exc).__name__}: {exc.msg}")
    except (OSError, ValueError) as exc:
        bad += 1
        print(f"{path}:0: {type(exc).__name__}: {exc}")
sys.exit(1 if bad else 0)
"""
_LOCATED = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+):(?:\d+:)?\s*(?P<message>.+)$")


def _python_files(change: Change) -> list[PurePosixPath]:
    return sorted(f.path for f in change.files
                  if f.status != "deleted" and f.path.suffix == ".py")  # fmt: skip


def _located(output: str, cls: str) -> tuple[Finding, ...]:
    found = []
    for line in output.splitlines():
        match = _LOCATED.match(line.strip())
        if match:
            found.append(Finding(cls, match["path"], int(match["line"]), match["message"]))
    return tuple(found[:200])


class CompileStage:
    """Byte-compile every changed Python file (in memory, in the sandbox)."""

    name = "compile"

    def run(self, change: Change, config: GauntletConfig) -> StageOutcome:
        files = _python_files(change)
        if not files:
            return StageOutcome.skipped("no changed Python files to compile")
        argv = [sys.executable, "-I", "-c", _COMPILE, *map(str, files)]
        done = run_readonly(argv, change.workspace, config)
        if done.timed_out or done.returncode != 0:
            findings = () if done.timed_out else _located(done.output, "compile_error")
            return StageOutcome.rejected(done.why("byte-compiling", config.timeout_s), findings)
        return StageOutcome.passed(f"{len(files)} file(s) compile")


class CommandStage:
    """The project's unit or integration command, as configured (exit 0 passes)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, change: Change, config: GauntletConfig) -> StageOutcome:
        argv = config.unit_command if self.name == "unit" else config.integration_command
        if argv is None:
            return StageOutcome.skipped(f"no {self.name}_command configured "
                                        "([gauntlet] or [tool.factory.gauntlet])")  # fmt: skip
        if shutil.which(argv[0]) is None:
            return StageOutcome.rejected(f"{self.name}_command {argv[0]!r} is not on PATH")
        done = run_readonly(argv, change.workspace, config)
        if done.timed_out or done.returncode != 0:
            return StageOutcome.rejected(done.why(" ".join(argv), config.timeout_s))
        return StageOutcome.passed(f"{' '.join(argv)} passed")


class LintStage:
    """The lint command (ruff by default) over the changed Python files. Only what it
    reports on lines the change added counts: a file's older problems are not the
    change's doing (they are named in the pass reason). Output it reports without a
    path:line location, or a non-zero exit with no located finding, rejects."""

    name = "lint"

    def run(self, change: Change, config: GauntletConfig) -> StageOutcome:
        files = _python_files(change)
        if not files:
            return StageOutcome.skipped("no changed Python files to lint")
        tool = config.lint_command[0]
        if shutil.which(tool) is None:
            return StageOutcome.skipped(f"lint tool {tool!r} is not on PATH")
        argv = [*config.lint_command, *map(str, files)]
        done = run_readonly(argv, change.workspace, config)
        if done.timed_out:
            return StageOutcome.rejected(done.why(tool, config.timeout_s))
        if done.returncode == 0:
            return StageOutcome.passed(f"{len(files)} file(s) lint clean")
        located = _located(done.output, "lint")
        if not located:
            return StageOutcome.rejected(done.why(tool, config.timeout_s))
        added = {str(f.path): f.added_lines for f in change.files}
        new = tuple(f for f in located if f.line in added.get(f.path, frozenset()))
        if new:
            return StageOutcome.rejected(f"{tool}: {len(new)} problem(s) on changed lines", new)
        return StageOutcome.passed(f"{len(files)} file(s): no problem on changed lines "
                                   f"({len(located)} older one(s) left alone)")  # fmt: skip
