"""The role prompts: every placeholder the seed names is in its template and filled in;
a missing or unknown one is an error naming it, never an empty string; the templates ship
as package data."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from procs.loop import prompts

CONTEXTS: dict[str, dict[str, Any]] = {
    "auditor": {
        "language": "Python 3.11", "test_command": "python -m pytest -q",
        "requirements": "REQ-add: add(a, b) returns the sum", "iteration": 4,
        "refactor_interval": 3, "last_feedback": "FEEDBACK-collection error in test_x",
    },
    "implementer": {
        "language": "Python 3.11", "test_command": "python -m pytest -q",
        "requirements": "REQ-mul", "auditor_reasoning": "REASONING-drives mul()",
        "test_output": "OUTPUT-AttributeError: mul", "attempt": 2, "max_attempts": 3,
    },
    "architect": {
        "language": "Python 3.11", "test_command": "python -m pytest -q", "greens": 3,
        "session_history": "HISTORY-iteration 1 auditor ...",
        "hard_limits": {"max_function_lines": 40, "max_file_lines": 400},
        "cupid_properties": list(prompts.CUPID_PROPERTIES), "lines_before": 120,
        "lines_now": 180,
    },
    "reviewer": {
        "requirements": "REQ-all", "statistics": {"commits": 5, "reverts": 1},
        "diff": "DIFF-+def mul(a, b):",
    },
}  # fmt: skip

# What the seed names for each template (fs-112, fs-122, fs-132, fs-142).
SEED_PLACEHOLDERS = {
    "auditor": {"language", "test_command", "requirements", "iteration", "refactor_interval",
                "last_feedback"},
    "implementer": {"auditor_reasoning", "test_output", "attempt", "max_attempts"},
    "architect": {"session_history", "hard_limits", "cupid_properties", "lines_before",
                  "lines_now"},
    "reviewer": {"requirements", "statistics"},
}  # fmt: skip


@pytest.mark.parametrize("role", prompts.ROLES)
def test_each_template_uses_exactly_its_placeholders(role: str) -> None:
    assert prompts.template_variables(role) == prompts.PLACEHOLDERS[role]
    assert SEED_PLACEHOLDERS[role] <= prompts.PLACEHOLDERS[role]
    assert set(CONTEXTS[role]) == prompts.PLACEHOLDERS[role]


@pytest.mark.parametrize("role", prompts.ROLES)
def test_rendering_fills_in_every_value(role: str) -> None:
    text = prompts.render(role, **CONTEXTS[role])
    for value in CONTEXTS[role].values():
        if isinstance(value, str):
            assert value in text
        elif isinstance(value, dict):
            assert all(f"{k}: {v}" in text for k, v in value.items())
        elif isinstance(value, list):
            assert all(item in text for item in value)
        else:
            assert str(value) in text
    assert text.rstrip().splitlines()[-1].startswith("FACTORY_RESULT {")
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize("role", prompts.ROLES)
def test_a_missing_placeholder_is_an_error_naming_it(role: str) -> None:
    for name in CONTEXTS[role]:
        context = {k: v for k, v in CONTEXTS[role].items() if k != name}
        with pytest.raises(prompts.MissingPlaceholder, match=f"{role} prompt: .*'{name}'"):
            prompts.render(role, **context)


def test_an_unknown_placeholder_or_role_is_an_error() -> None:
    with pytest.raises(prompts.UnknownPlaceholder, match="'requirments'"):
        prompts.render("reviewer", **CONTEXTS["reviewer"], requirments="typo")
    with pytest.raises(prompts.PromptError, match="no prompt for role 'judge'"):
        prompts.render("judge")


def test_strict_undefined_guards_the_templates_too() -> None:
    # Even past render()'s own check, an undefined name in a template raises.
    template = prompts._environment().from_string("{{ nothing }}")
    with pytest.raises(Exception, match="'nothing' is undefined"):
        template.render()


def test_agent_text_is_never_parsed_as_a_template() -> None:
    context = dict(CONTEXTS["implementer"], test_output="{{ 7 * 7 }} {% raw %}")
    assert "{{ 7 * 7 }} {% raw %}" in prompts.render("implementer", **context)


@pytest.mark.parametrize("role", prompts.ROLES)
def test_system_prompts_and_templates_ship_as_package_data(role: str) -> None:
    folder = resources.files("procs.loop") / "templates"
    assert (folder / f"{role}.md.j2").is_file()
    assert (folder / f"{role}_system.md.j2").is_file()
    assert role.upper() in prompts.system_prompt(role)
