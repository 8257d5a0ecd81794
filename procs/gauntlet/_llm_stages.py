"""llm_judge and architectural_review: the router's judge and reviewer roles.

Each sends the diff and the requirements to the LLM router's control socket
(`<runtime_dir>/llm_router.sock`, command `route`, ipc.control framing) under its role,
and reads one JSON object back, strictly:
    {"verdict": "PASS" | "FAIL", "reasons": ["...", ...]}
FAIL rejects with the reasons as findings. No router listening, no route for the role, no
model reachable (endpoint down, no key, breaker open) or the budget spent: the stage is
SKIPPED with that reason, never passed. An answer outside the schema rejects (the judge
could not judge); a call past llm_timeout_s rejects as a timeout.
architectural_review runs only above review_min_lines changed lines or when a Python
module is added (seed fs-167); else it is skipped saying so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ipc import control, paths
from procs.gauntlet._change import Change
from procs.gauntlet._config import GauntletConfig
from procs.gauntlet._model import Finding, StageOutcome
from procs.testfiles import is_test_path

MAX_DIFF_CHARS = 60_000
MAX_TOKENS = 1024
_UNREACHABLE = frozenset({"EndpointUnavailable", "EndpointTimeout", "MissingAPIKey",
                          "CircuitOpen", "TicketTimeout", "UpstreamError"})  # fmt: skip
_SCHEMA = ('Answer with exactly one JSON object and nothing else: {"verdict": "PASS" or '
           '"FAIL", "reasons": [one short sentence per reason]}.')  # fmt: skip
_JUDGE = """You are the judge of a code change in a TDD loop. FAIL it if it does not build
the behaviour the requirements ask for, if it games the tests (hardcoded answers, special
cases for test inputs, weakened or deleted tests, swallowed errors, commented-out code,
rigged equality, runner tampering), or if it is clearly wrong. Otherwise PASS.
"""
_REVIEW = """You are the architect reviewing a large change (many lines or a new module).
FAIL it for structural problems: misplaced responsibilities, modules importing what they
should not, duplicated logic, god objects, missing error handling at boundaries.
Otherwise PASS.
"""


class JudgeAnswerInvalid(ValueError):
    """The model's answer is not one object of the strict schema."""


def parse_answer(text: str) -> tuple[bool, list[str]]:
    """(passed, reasons) from the model's text; JudgeAnswerInvalid says what is wrong."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match is None:
        raise JudgeAnswerInvalid(f"no JSON object in the answer: {text[:200]!r}")
    try:
        answer = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise JudgeAnswerInvalid(f"answer is not valid JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(answer, dict) or set(answer) != {"verdict", "reasons"}:
        raise JudgeAnswerInvalid(f"answer must have exactly verdict and reasons: {answer!r:.200}")
    verdict, reasons = answer["verdict"], answer["reasons"]
    if verdict not in ("PASS", "FAIL"):
        raise JudgeAnswerInvalid(f"verdict must be PASS or FAIL, got {verdict!r}")
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise JudgeAnswerInvalid(f"reasons must be a list of strings, got {reasons!r:.200}")
    if verdict == "FAIL" and not reasons:
        raise JudgeAnswerInvalid("a FAIL needs at least one reason")
    return verdict == "PASS", reasons


def router_socket(config: GauntletConfig) -> Path:
    return config.router_socket or paths.runtime_dir() / "llm_router.sock"


class RouterStage:
    """One call to the router under `role_attr` of the config with `instructions`."""

    def __init__(self, name: str, role_attr: str, instructions: str, *,
                 call: control.Caller = control.call) -> None:  # fmt: skip
        self.name = name
        self.role_attr = role_attr
        self.instructions = instructions
        self.call = call

    def applies(self, change: Change, config: GauntletConfig) -> str | None:
        """None when the stage should run, else why it is skipped."""
        return None

    def run(self, change: Change, config: GauntletConfig) -> StageOutcome:
        why_not = self.applies(change, config)
        if why_not is not None:
            return StageOutcome.skipped(why_not)
        role = str(getattr(config, self.role_attr))
        socket = router_socket(config)
        request = {"model": "", "prompt": self.prompt(change, config), "max_tokens": MAX_TOKENS,
                   "temperature": 0.0}  # fmt: skip
        args: dict[str, Any] = {"role": role, "timeout_s": config.llm_timeout_s,
                                "request": request}  # fmt: skip
        try:
            result = self.call(socket, "route", args, timeout=config.llm_timeout_s + 5.0)
        except control.DaemonNotRunning:
            return StageOutcome.skipped(f"no LLM router is listening on {socket}")
        except control.ControlTimeout:
            return StageOutcome.rejected(f"the router did not answer within "
                                         f"{config.llm_timeout_s:g} s (timed out)")  # fmt: skip
        except control.RemoteError as exc:
            if exc.type == "UnknownRole":
                return StageOutcome.skipped(f"the router has no route for role {role!r}: {exc}")
            if exc.type == "BudgetExceeded":
                return StageOutcome.skipped(f"the LLM budget is spent: {exc}")
            if exc.type in _UNREACHABLE:
                return StageOutcome.skipped(f"no model is reachable for role {role!r} "
                                            f"({exc.type}: {exc})")  # fmt: skip
            return StageOutcome.rejected(f"the router refused the call ({exc.type}: {exc})")
        except control.ControlError as exc:
            return StageOutcome.skipped(f"the LLM router at {socket} cannot be reached: {exc}")
        content = result.get("content") if isinstance(result, dict) else None
        if not isinstance(content, str):
            return StageOutcome.rejected(f"the router's reply has no content: {result!r:.200}")
        try:
            passed, reasons = parse_answer(content)
        except JudgeAnswerInvalid as exc:
            return StageOutcome.rejected(f"the {role} answered outside the schema: {exc}")
        if passed:
            return StageOutcome.passed("; ".join(reasons) or f"{role}: PASS")
        findings = tuple(Finding(self.name, "", 0, reason) for reason in reasons)
        return StageOutcome.rejected(f"{role}: FAIL: {reasons[0]}", findings)

    def prompt(self, change: Change, config: GauntletConfig) -> str:
        diff = change.diff
        if len(diff) > MAX_DIFF_CHARS:
            diff = diff[:MAX_DIFF_CHARS] + f"\n[... {len(change.diff) - MAX_DIFF_CHARS} more chars]"
        requirements = config.requirements.strip() or "(no requirements were given)"
        return (
            f"{self.instructions}\n{_SCHEMA}\n\n## Requirements\n{requirements}\n\n"
            f"## The change (unified diff from {change.base[:12]})\n{diff}\n"
        )


class LlmJudge(RouterStage):
    """The judge role (haiku-class by default in the router's config)."""

    def __init__(self, *, call: control.Caller = control.call) -> None:
        super().__init__("llm_judge", "judge_role", _JUDGE, call=call)


class ArchitecturalReview(RouterStage):
    """The review role (a stronger model), only for big changes or new modules."""

    def __init__(self, *, call: control.Caller = control.call) -> None:
        super().__init__("architectural_review", "review_role", _REVIEW, call=call)

    def applies(self, change: Change, config: GauntletConfig) -> str | None:
        added = [f for f in change.files if f.status == "added" and f.path.suffix == ".py"
                 and not is_test_path(f.path)]  # fmt: skip
        if change.lines_changed > config.review_min_lines or added:
            return None
        return (
            f"{change.lines_changed} changed lines (<= {config.review_min_lines}) and no "
            "module added: no architectural review needed"
        )
