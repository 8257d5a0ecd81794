"""What a gauntlet stage is and what it says: the Stage protocol and its plain-data results.

A stage looks at one `Change` (the diff from REV to the workspace, snapshotted before any
stage runs) and returns a `StageOutcome`: pass, reject or skipped, a one-line reason, and
findings. The runner (`_runner.py`) times each stage and turns a crash into a rejection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from procs.gauntlet._change import Change
    from procs.gauntlet._config import GauntletConfig


class Verdict(enum.StrEnum):
    PASS = "pass"
    REJECT = "reject"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Finding:
    """One reason to reject: its class (e.g. "deleted_tests"), where (workspace-relative
    path, 1-based line; 0 when it concerns the whole file) and why, in words an agent can
    act on."""

    cls: str
    path: str
    line: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.cls, "path": self.path, "line": self.line, "message": self.message}

    def feedback(self) -> str:
        """One line for the implementer: `path:line: [class] message`."""
        return f"{self.path}:{self.line}: [{self.cls}] {self.message}"


@dataclass(frozen=True)
class StageOutcome:
    """What a stage decided. A reject carries a reason and usually findings; a skip always
    carries its reason (a stage is never silently passed)."""

    verdict: Verdict
    reason: str = ""
    findings: tuple[Finding, ...] = ()

    @classmethod
    def passed(cls, reason: str = "") -> StageOutcome:
        return cls(Verdict.PASS, reason)

    @classmethod
    def skipped(cls, reason: str) -> StageOutcome:
        if not reason:
            raise ValueError("a skipped stage needs a reason")
        return cls(Verdict.SKIPPED, reason)

    @classmethod
    def rejected(cls, reason: str, findings: tuple[Finding, ...] = ()) -> StageOutcome:
        return cls(Verdict.REJECT, reason, tuple(findings))


@dataclass(frozen=True)
class StageResult:
    """A stage's outcome with its name and wall time."""

    name: str
    outcome: StageOutcome
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "verdict": self.outcome.verdict.value,
            "reason": self.outcome.reason,
            "findings": [finding.to_dict() for finding in self.outcome.findings],
            "duration_ms": round(self.duration_ms),
        }  # fmt: skip


@dataclass(frozen=True)
class GauntletResult:
    """Every stage that ran, in order; the verdict is reject if any stage rejected."""

    stages: tuple[StageResult, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> Verdict:
        rejected = any(s.outcome.verdict is Verdict.REJECT for s in self.stages)
        return Verdict.REJECT if rejected else Verdict.PASS

    @property
    def findings(self) -> list[Finding]:
        return [finding for stage in self.stages for finding in stage.outcome.findings]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "stages": [s.to_dict() for s in self.stages]}

    def feedback(self) -> str:
        """Why it was rejected, for the implementer ('' when it passed): each rejecting
        stage's reason, then each finding on its own line."""
        lines = []
        for stage in self.stages:
            if stage.outcome.verdict is Verdict.REJECT:
                lines.append(f"{stage.name}: {stage.outcome.reason}")
                lines += [f"  {finding.feedback()}" for finding in stage.outcome.findings]
        return "\n".join(lines)


class Stage(Protocol):
    """One gauntlet stage (STYLE rule 15). `name` is what --stage and the JSON call it.

    `run` must not change the workspace. A stage that runs code runs it through
    procs.sandbox with config.timeout_s; a timeout is a rejection saying so. An exception
    escaping `run` is caught by the runner and rejects the change, naming it.
    """

    name: str

    def run(self, change: Change, config: GauntletConfig) -> StageOutcome: ...
