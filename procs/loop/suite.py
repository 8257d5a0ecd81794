"""One run of the project's pytest suite in the sandbox, and what its outcome means for TCR.

    run_suite(workspace, test_command, policy) -> SuiteRun     in the sandbox, with a timeout
    judge_red(before, after) -> None | reason                  is `after` a valid red?
    tcr_policy(workspace, ...) -> SandboxPolicy                .git, tests and harness read-only

Every run goes through procs.sandbox.run: agent-written code never runs outside bubblewrap
(SandboxUnavailable propagates: nothing is run). `test_command` is a pytest command line;
the loop appends `-p no:cacheprovider` and `--junitxml=<workspace>/.factory-junit-<random>.xml`
and runs it with PYTHONDONTWRITEBYTECODE=1, so the run leaves nothing in the workspace.

Why the report sits in the workspace: the sandbox's /tmp is a private tmpfs that vanishes
with bwrap, and the workspace is the only place the sandbox may write that we can read
afterwards; the name is random, the file is read (at most MAX_REPORT_BYTES) and deleted
at once, and `git clean` would remove a leftover. The report is corroboration, not proof:
code under test runs in the same sandbox and could forge it, so a verdict needs pytest's
exit status AND the report to agree (exit 1 with failures in test bodies and no errors).

Pytest exit statuses: 0 all passed, 1 some failed, 2 interrupted (a collection or syntax
error), 3 internal error, 4 usage error, 5 no tests collected.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from procs import sandbox
from procs.loop import git
from procs.testfiles import TEST_DIRS, is_harness_path, is_test_path

MAX_REPORT_BYTES = 16 * 1024 * 1024
MAX_OUTPUT_CHARS = 64 * 1024
MAX_LOCKED_PATHS = 1024
REPORT_PREFIX = ".factory-junit-"


class Case(enum.StrEnum):
    """One test's outcome in the report: `error` is a failure outside the test's body
    (collection, setup, teardown)."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class SuiteRun:
    """How a suite run ended: pytest's `exit_code` (for a timeout, what the kill left),
    `timed_out`, wall `duration_ms`, the last MAX_OUTPUT_CHARS of stdout+stderr, each
    test's outcome by id (`module.Class::name` as the report names it) and whether the
    report could be read (`report_read`; when False, `report_problem` says why)."""

    exit_code: int
    timed_out: bool
    duration_ms: float
    output: str
    cases: Mapping[str, Case] = field(default_factory=dict)
    report_read: bool = False
    report_problem: str = ""

    @property
    def green(self) -> bool:
        """Passed beyond doubt: exit 0, no timeout, a report with no failure or error."""
        return (
            self.exit_code == 0 and not self.timed_out and self.report_read
            and not self.with_outcome(Case.FAILED) and not self.with_outcome(Case.ERROR)
        )  # fmt: skip

    def with_outcome(self, outcome: Case) -> list[str]:
        return sorted(name for name, case in self.cases.items() if case is outcome)

    def why_not_green(self) -> str:
        """One line for feedback and history: why this run is not green ('' if it is)."""
        if self.green:
            return ""
        if self.timed_out:
            return f"the test run timed out after {self.duration_ms / 1000:.1f} s"
        explained = _EXIT_REASONS.get(self.exit_code, f"pytest exited {self.exit_code}")
        failed, errors = self.with_outcome(Case.FAILED), self.with_outcome(Case.ERROR)
        parts = [explained]
        if failed:
            parts.append(f"failed: {', '.join(failed[:10])}")
        if errors:
            parts.append(f"errors outside test bodies: {', '.join(errors[:10])}")
        if not self.report_read:
            parts.append(f"no usable report ({self.report_problem})")
        return "; ".join(parts)


_EXIT_REASONS = {
    0: "pytest exited 0",
    1: "tests failed (pytest exit 1)",
    2: "the run was interrupted: a collection or syntax error (pytest exit 2)",
    3: "pytest had an internal error (exit 3)",
    4: "pytest was called wrongly (exit 4)",
    5: "no tests were collected (pytest exit 5)",
}


def suite_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a suite runs with: PATH from ours, HOME in the private /tmp, no
    bytecode written; `extra` on top (never secrets: the code under test is the agent's)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    env.update(extra or {})
    return env


def run_suite(
    workspace: Path,
    test_command: Sequence[str],
    policy: sandbox.SandboxPolicy,
    *,
    env: Mapping[str, str] | None = None,
) -> SuiteRun:
    """Run `test_command` (pytest) in `workspace` under `policy`, to its end or
    policy.timeout_s; read and delete its junit report. Raises SandboxUnavailable (nothing
    ran) and OSError (the sandbox could not start). Blocks at most policy.timeout_s plus
    the sandbox's drain time."""
    if not test_command:
        raise ValueError("test_command is empty")
    report = Path(workspace) / f"{REPORT_PREFIX}{secrets.token_hex(8)}.xml"
    argv = [*test_command, "-p", "no:cacheprovider", f"--junitxml={report}"]
    try:
        done = sandbox.run(argv, policy, env=suite_env(env))
        cases, problem = _read_report(report)
    finally:
        with contextlib.suppress(FileNotFoundError):
            report.unlink()
    output = (done.stdout + done.stderr).decode(errors="replace")[-MAX_OUTPUT_CHARS:]
    return SuiteRun(
        exit_code=done.returncode, timed_out=done.timed_out, duration_ms=done.duration_ms,
        output=output, cases=cases, report_read=not problem, report_problem=problem,
    )  # fmt: skip


def judge_red(before: SuiteRun, after: SuiteRun) -> str | None:
    """None when `after` (the suite with the auditor's new tests) is a valid red against
    `before` (the same suite at the last green commit); else the reason it is not.

    Valid red: no timeout, pytest exit 1, a readable report, at least one failure, every
    failure in a test that did not pass before (a new test), no error outside a test body,
    and every test that passed before still passes.
    """
    if after.timed_out:
        return after.why_not_green()
    if after.exit_code != 1:
        if after.exit_code == 0:
            return "the new tests pass already: they must fail before the code exists"
        return after.why_not_green()
    if not after.report_read:
        return f"pytest exit 1 but no usable report ({after.report_problem})"
    errors = after.with_outcome(Case.ERROR)
    if errors:
        return f"errors outside test bodies (collection, setup or teardown): {', '.join(errors)}"
    passed_before = set(before.with_outcome(Case.PASSED))
    broken = sorted(name for name in passed_before if after.cases.get(name) is not Case.PASSED)
    if broken:
        return f"tests that passed before no longer pass: {', '.join(broken[:10])}"
    failed = after.with_outcome(Case.FAILED)
    if not failed:
        return "pytest exit 1 but the report shows no failing test"
    return None


def tcr_policy(
    workspace: Path,
    *,
    timeout_s: float,
    memory_mb: int = sandbox.DEFAULT_MEMORY_MB,
    mode: str = "bwrap",
) -> sandbox.SandboxPolicy:
    """A policy for a TCR run: the workspace writable except .git (a hook written there
    would run outside the sandbox at our next commit), the tracked test directories, test
    files and harness files (the code under test may not rewrite its own tests). Raises
    ValueError past MAX_LOCKED_PATHS paths."""
    root = Path(workspace).resolve()
    locked: set[PurePosixPath] = {PurePosixPath(".git")}
    for name in git.git(root, "ls-files", "-z").split("\0"):
        if not name:
            continue
        path = PurePosixPath(name)
        dirs = [i for i, part in enumerate(path.parts[:-1]) if part in TEST_DIRS]
        if dirs:
            locked.add(PurePosixPath(*path.parts[: dirs[0] + 1]))
        elif is_test_path(path) or is_harness_path(path):
            locked.add(path)
        if len(locked) > MAX_LOCKED_PATHS:
            raise ValueError(
                f"workspace {root} has more than {MAX_LOCKED_PATHS} test and harness paths "
                "to lock read-only (MAX_LOCKED_PATHS)"
            )
    return sandbox.SandboxPolicy(
        workspace=root, readonly_paths=tuple(root / path for path in sorted(locked)),
        timeout_s=timeout_s, memory_mb=memory_mb, mode=mode,
    )  # fmt: skip


def _read_report(report: Path) -> tuple[dict[str, Case], str]:
    """The cases in a junit report, or ({}, why it could not be read)."""
    try:
        size = report.stat().st_size
        if size > MAX_REPORT_BYTES:
            return {}, f"report is {size} bytes, over MAX_REPORT_BYTES"
        root = ET.fromstring(report.read_bytes())
    except FileNotFoundError:
        return {}, "pytest wrote no junit report"
    except (OSError, ET.ParseError) as exc:
        return {}, f"unreadable junit report: {exc}"
    cases: dict[str, Case] = {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        tags = {child.tag for child in case}
        if "error" in tags:
            outcome = Case.ERROR
        elif "failure" in tags:
            outcome = Case.FAILED
        elif "skipped" in tags:
            outcome = Case.SKIPPED
        else:
            outcome = Case.PASSED
        if cases.get(name) is not Case.ERROR:
            cases[name] = outcome
    return cases, ""
