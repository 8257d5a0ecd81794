"""cheat_detection: the static rules over the diff and the patched tree, then the dynamic
re-run of REV's tests. Every finding names its class, file, line and why. A test of REV
that fails in the re-run is a finding of the class the static rules gave its file (e.g.
deleted_tests), runner_tampering when the runner's setup changed, else failing_tests.

    static_findings(change) -> [Finding]     no code run; what bench/gauntlet.py times
    CheatDetection().run(change, config)     static + dynamic; rejects on any finding
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import PurePosixPath

from procs.gauntlet._astkit import parse
from procs.gauntlet._change import Change, FileChange
from procs.gauntlet._cheat_code import code_findings
from procs.gauntlet._cheat_dynamic import run_protected
from procs.gauntlet._cheat_harness import harness_findings
from procs.gauntlet._cheat_tests import test_file_findings
from procs.gauntlet._config import GauntletConfig
from procs.gauntlet._hardcoded import Expectation, expectations, hardcoded_findings
from procs.gauntlet._model import Finding, StageOutcome
from procs.testfiles import is_test_module, is_test_path

MAX_RELATED_TESTS = 200
GREP_TIMEOUT_S = 30.0
CLASSES = (
    "deleted_tests", "hardcoded_values", "ignored_errors", "commented_code", "empty_catch",
    "weakened_tests", "edited_expectations", "runner_tampering", "test_detection",
    "rigged_equality",
)  # fmt: skip


def static_findings(change: Change) -> list[Finding]:
    """Every static finding over the change (no code is run)."""
    findings = test_file_findings(change.files)
    code_trees: list[tuple[FileChange, ast.Module]] = []
    for file in change.files:
        findings += harness_findings(file)
        if file.status == "deleted" or file.path.suffix != ".py":
            continue
        tree = parse(file.new_text, str(file.path))
        if tree is None:
            continue  # not Python that compiles: the compile stage rejects it
        test_file = is_test_path(file.path)
        findings += code_findings(file, tree, test_file=test_file)
        if not test_file:
            code_trees.append((file, tree))
    if code_trees:
        expected = _expectations(change, code_trees)
        for file, tree in code_trees:
            findings += hardcoded_findings(file, tree, expected)
    unique = {(f.cls, f.path, f.line, f.message): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.path, f.line, f.cls))


def _expectations(change: Change, code_trees: list[tuple[FileChange, ast.Module]]
                  ) -> list[Expectation]:  # fmt: skip
    """What the tests expect of the functions the change touches: from the changed test
    files and REV's tests that name those functions (git grep in the work tree)."""
    names = set()
    for file, tree in code_trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                line in file.added_lines
                for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
            ):
                names.add(node.name)
    texts: dict[str, str] = {}
    for file in change.files:
        if is_test_module(file.path) and file.new_text is not None:
            texts[str(file.path)] = file.new_text
        if is_test_module(file.base_path) and file.base_text is not None:
            texts.setdefault(f"{file.base_path}@REV", file.base_text)
    if change.test_texts is not None:
        for path, text in change.test_texts.items():
            texts.setdefault(path, text)
    elif names:
        for path in _grep(change, sorted(names)):
            if path not in texts:
                try:
                    texts[path] = (change.workspace / path).read_text()
                except (OSError, UnicodeDecodeError):
                    continue
    found: list[Expectation] = []
    for path, text in texts.items():
        module = parse(text, path)
        if module is not None:
            found += expectations(path.removesuffix("@REV"), module)
    return found


def _grep(change: Change, names: list[str]) -> list[str]:
    argv = ["git", "grep", "-l", "-I", "-w", "-F", "--untracked"]
    for name in names[:100]:
        argv += ["-e", name]
    argv += ["--", "*test_*.py", "*_test.py"]
    try:
        done = subprocess.run(argv, cwd=change.workspace, capture_output=True,
                              timeout=GREP_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    paths = done.stdout.decode(errors="replace").splitlines()
    return [p for p in paths if is_test_module(PurePosixPath(p))][:MAX_RELATED_TESTS]


class CheatDetection:
    """Static rules, then REV's tests against the patched code (dynamic=False: static
    only, for benches and callers that run the suite themselves)."""

    name = "cheat_detection"

    def __init__(self, *, dynamic: bool = True) -> None:
        self.dynamic = dynamic

    def run(self, change: Change, config: GauntletConfig) -> StageOutcome:
        findings = static_findings(change)
        reasons = []
        if findings:
            classes = sorted({f.cls for f in findings})
            reasons.append(f"{len(findings)} finding(s): {', '.join(classes)}")
        if self.dynamic:
            run = run_protected(change, config)
            if not run.green:
                findings += _explain(run.failed, findings)
                reasons.append(
                    run.problem
                    or "REV's tests fail against the patched code: "
                    + ", ".join(f"{p}::{n}" for p, n in run.failed[:10])
                )
        if reasons:
            return StageOutcome.rejected("; ".join(reasons), tuple(findings))
        checked = "static rules and REV's tests" if self.dynamic else "static rules"
        return StageOutcome.passed(f"no cheat found ({checked})")


def _explain(failed: list[tuple[str, str]], static: list[Finding]) -> list[Finding]:
    """A finding per test of REV that fails now, classed by what the change did to it."""
    out = []
    tampering = any(f.cls == "runner_tampering" for f in static)
    for path, name in failed:
        related = [f for f in static if f.path == path and name.split("::")[-1] in f.message]
        if related:
            cls = related[0].cls
        elif tampering:
            cls = "runner_tampering"
        else:
            cls = "failing_tests"
        out.append(Finding(cls, path, 0, f"REV's test {name} fails against the patched code "
                                         "(run as it was at REV)"))  # fmt: skip
    return out
