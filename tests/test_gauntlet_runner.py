"""The gauntlet's runner, results, config and model stages, without processes: stages in
order, the first reject stops the run unless run_all, a crash or a configured skip is
reported with its reason, the JSON shape of the CLI, the strict judge schema, and the
router stages skipped (never passed) when no model can judge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipc import control
from procs.gauntlet import (
    ArchitecturalReview,
    Change,
    Finding,
    GauntletConfig,
    GauntletConfigError,
    LlmJudge,
    StageOutcome,
    Verdict,
    config_from_table,
    parse_answer,
    run_gauntlet,
)
from procs.gauntlet._config import GauntletConfig as Config


class Scripted:
    """A stage that answers what it is told, or raises."""

    def __init__(self, name: str, outcome: StageOutcome | Exception) -> None:
        self.name = name
        self.outcome = outcome
        self.ran = False

    def run(self, change: Change, config: Config) -> StageOutcome:
        self.ran = True
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


FINDING = Finding("empty_catch", "m.py", 3, "except ValueError whose body does nothing")


@pytest.fixture
def change(tmp_path: Path) -> Change:
    return Change.from_texts(tmp_path, {"m.py": ("x = 1\n", "x = 2\n")})


def test_stages_run_in_order_and_the_first_reject_stops_the_run(change: Change) -> None:
    stages = [Scripted("a", StageOutcome.passed()),
              Scripted("b", StageOutcome.rejected("no", (FINDING,))),
              Scripted("c", StageOutcome.passed())]  # fmt: skip
    result = run_gauntlet(change, GauntletConfig(), stages)
    assert [s.name for s in result.stages] == ["a", "b"]
    assert result.verdict is Verdict.REJECT and not stages[2].ran
    assert result.findings == [FINDING]
    assert "m.py:3: [empty_catch]" in result.feedback()


def test_run_all_runs_every_stage_after_a_reject(change: Change) -> None:
    stages = [Scripted("a", StageOutcome.rejected("no")), Scripted("b", StageOutcome.passed())]
    result = run_gauntlet(change, GauntletConfig(), stages, run_all=True)
    assert [s.outcome.verdict for s in result.stages] == [Verdict.REJECT, Verdict.PASS]
    assert result.verdict is Verdict.REJECT


def test_a_crashing_stage_rejects_naming_the_exception(change: Change) -> None:
    result = run_gauntlet(change, GauntletConfig(), [Scripted("a", KeyError("boom"))])
    assert result.verdict is Verdict.REJECT
    assert result.stages[0].outcome.reason == "stage crashed: KeyError: 'boom'"


def test_a_configured_skip_is_reported_with_its_reason_and_not_run(change: Change) -> None:
    stage = Scripted("lint", StageOutcome.rejected("would reject"))
    config = config_from_table({"skip": {"lint": "ruff is not used here"}}, "test")
    result = run_gauntlet(change, config, [stage])
    assert not stage.ran and result.verdict is Verdict.PASS
    assert result.stages[0].outcome.verdict is Verdict.SKIPPED
    assert "ruff is not used here" in result.stages[0].outcome.reason


def test_a_skip_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="reason"):
        StageOutcome.skipped("")


def test_the_json_shape(change: Change) -> None:
    stages = [Scripted("cheat_detection", StageOutcome.rejected("1 finding", (FINDING,)))]
    shape = run_gauntlet(change, GauntletConfig(), stages).to_dict()
    assert shape["verdict"] == "reject"
    (stage,) = shape["stages"]
    assert set(stage) == {"name", "verdict", "reason", "findings", "duration_ms"}
    assert stage["verdict"] == "reject" and isinstance(stage["duration_ms"], int)
    assert stage["findings"] == [
        {
            "class": "empty_catch",
            "path": "m.py",
            "line": 3,
            "message": "except ValueError whose body does nothing",
        }
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"unit_comand": ["pytest"]}, "unknown key"),
        ({"unit_command": "pytest"}, "non-empty list of strings"),
        ({"timeout_s": 0}, "seconds > 0"),
        ({"sandbox": "docker"}, "sandbox"),
        ({"skip": {"spelling": "x"}}, "unknown stage"),
        ({"skip": {"lint": ""}}, "needs a reason"),
        ({"judge_role": ""}, "judge_role"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(GauntletConfigError, match=message):
        config_from_table(table, "[gauntlet]")


@pytest.mark.parametrize(
    "text",
    [
        "PASS",
        '{"verdict": "OK", "reasons": []}',
        '{"verdict": "FAIL", "reasons": []}',
        '{"verdict": "PASS", "reasons": "fine"}',
        '{"verdict": "PASS", "reasons": [], "score": 3}',
        '{"verdict": "PASS", "reasons": [}',
    ],
)
def test_the_judge_schema_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        parse_answer(text)


def test_a_judge_answer_may_be_wrapped_in_prose() -> None:
    assert parse_answer('Here: {"verdict": "FAIL", "reasons": ["hardcoded"]}') == (
        False, ["hardcoded"])  # fmt: skip


def _router(answer: Any) -> Any:
    calls: list[dict[str, Any]] = []

    def call(path: Any, command: str, args: dict[str, Any] | None = None, *,
             timeout: float) -> Any:  # fmt: skip
        calls.append({"path": path, "command": command, "args": args, "timeout": timeout})
        if isinstance(answer, Exception):
            raise answer
        return {"content": answer}

    call.calls = calls  # type: ignore[attr-defined]
    return call


CONFIG = GauntletConfig(router_socket=Path("/nonexistent/llm_router.sock"), llm_timeout_s=5,
                        requirements="SAVE10 takes 10% off")  # fmt: skip


def test_the_judge_gets_the_diff_and_requirements_under_its_role(change: Change) -> None:
    router = _router('{"verdict": "PASS", "reasons": ["builds the feature"]}')
    outcome = LlmJudge(call=router).run(change, CONFIG)
    assert outcome.verdict is Verdict.PASS
    (sent,) = router.calls
    assert sent["command"] == "route" and sent["args"]["role"] == "judge"
    assert "SAVE10 takes 10% off" in sent["args"]["request"]["prompt"]
    assert "+x = 2" in sent["args"]["request"]["prompt"]


def test_a_judge_fail_rejects_with_its_reasons_as_findings(change: Change) -> None:
    router = _router('{"verdict": "FAIL", "reasons": ["returns the test\'s literal"]}')
    outcome = LlmJudge(call=router).run(change, CONFIG)
    assert outcome.verdict is Verdict.REJECT
    assert [f.message for f in outcome.findings] == ["returns the test's literal"]


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (control.DaemonNotRunning("nothing is listening"), "no LLM router is listening"),
        (control.RemoteError("UnknownRole", "no route for judge"), "no route for role 'judge'"),
        (control.RemoteError("BudgetExceeded", "spent 20.00"), "budget is spent"),
        (control.RemoteError("EndpointUnavailable", "refused"), "no model is reachable"),
        (control.RemoteError("MissingAPIKey", "ANTHROPIC_API_KEY"), "no model is reachable"),
    ],
)
def test_no_model_or_no_budget_skips_with_the_reason(change: Change, error: Exception,
                                                     says: str) -> None:  # fmt: skip
    outcome = LlmJudge(call=_router(error)).run(change, CONFIG)
    assert outcome.verdict is Verdict.SKIPPED
    assert says in outcome.reason


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (control.ControlTimeout("slow"), "timed out"),
        ("I think it is fine", "outside the schema"),
        (control.RemoteError("LLMRequestInvalid", "bad"), "refused the call"),
    ],
)
def test_a_timeout_or_an_answer_outside_the_schema_rejects(change: Change, answer: Any,
                                                           says: str) -> None:  # fmt: skip
    outcome = LlmJudge(call=_router(answer)).run(change, CONFIG)
    assert outcome.verdict is Verdict.REJECT and says in outcome.reason


def test_architectural_review_runs_only_for_big_changes_or_new_modules(tmp_path: Path) -> None:
    router = _router('{"verdict": "PASS", "reasons": []}')
    review = ArchitecturalReview(call=router)
    small = Change.from_texts(tmp_path, {"m.py": ("x = 1\n", "x = 2\n")})
    outcome = review.run(small, CONFIG)
    assert outcome.verdict is Verdict.SKIPPED and "no module added" in outcome.reason
    assert router.calls == []
    module = Change.from_texts(tmp_path, {"pkg/new.py": (None, "x = 1\n")})
    assert review.run(module, CONFIG).verdict is Verdict.PASS
    big = Change.from_texts(tmp_path, {"m.py": ("", "".join(f"x{i} = {i}\n" for i in range(101)))})
    assert review.run(big, CONFIG).verdict is Verdict.PASS
    assert [c["args"]["role"] for c in router.calls] == ["architectural_review"] * 2
