"""The role prompts (seed fs-111/112, 121/122, 131/132, 141/142): Jinja2 templates shipped
as package data in procs/loop/templates/, rendered with StrictUndefined.

    render(role, **context) -> str      the role's turn prompt
    system_prompt(role) -> str          the role's standing instructions
    PLACEHOLDERS[role]                  exactly the names render() needs for that role

A missing placeholder is an error, never an empty string: render() checks `context`
against PLACEHOLDERS first (MissingPlaceholder names the role and each missing name; an
unknown name is UnknownPlaceholder, so a typo cannot silently drop a value), and the
templates render under StrictUndefined as a second guard. Values are inserted as text:
what an agent wrote is never parsed as a template. Templates are read once per process.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2
import jinja2.meta

ROLES = ("auditor", "implementer", "architect", "reviewer")

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "auditor": frozenset({"language", "test_command", "requirements", "iteration",
                          "refactor_interval", "last_feedback"}),
    "implementer": frozenset({"language", "test_command", "requirements",
                              "auditor_reasoning", "test_output", "attempt", "max_attempts"}),
    "architect": frozenset({"language", "test_command", "greens", "session_history",
                            "hard_limits", "cupid_properties", "lines_before", "lines_now"}),
    "reviewer": frozenset({"requirements", "statistics", "diff"}),
}  # fmt: skip

CUPID_PROPERTIES = (
    "Composable: plays well with others",
    "Unix philosophy: does one thing well",
    "Predictable: does what you expect",
    "Idiomatic: feels natural",
    "Domain-based: the solution models the problem domain in language and structure",
)


class PromptError(ValueError):
    """A prompt could not be rendered; the message names the role and what was wrong."""


class MissingPlaceholder(PromptError):
    """render() was not given every placeholder the role's template uses."""


class UnknownPlaceholder(PromptError):
    """render() was given a name the role's template does not use."""


def render(role: str, **context: Any) -> str:
    """The turn prompt for `role` with `context` filled in.

    Raises PromptError for an unknown role, MissingPlaceholder / UnknownPlaceholder when
    `context` is not exactly PLACEHOLDERS[role].
    """
    needed = _placeholders(role)
    missing = sorted(needed - context.keys())
    if missing:
        raise MissingPlaceholder(f"{role} prompt: missing placeholder(s) {missing}")
    unknown = sorted(context.keys() - needed)
    if unknown:
        raise UnknownPlaceholder(f"{role} prompt: unknown placeholder(s) {unknown}")
    try:
        return _environment().get_template(f"{role}.md.j2").render(**context)
    except jinja2.UndefinedError as exc:
        raise MissingPlaceholder(f"{role} prompt: {exc}") from exc


def system_prompt(role: str) -> str:
    """The role's standing instructions (no placeholders)."""
    _placeholders(role)
    return _environment().get_template(f"{role}_system.md.j2").render()


def template_variables(role: str) -> frozenset[str]:
    """The names the role's turn template reads, found by parsing it (for the check that
    PLACEHOLDERS and the templates agree)."""
    _placeholders(role)
    environment = _environment()
    if environment.loader is None:
        raise PromptError("the prompt environment has no template loader")
    source, _, _ = environment.loader.get_source(environment, f"{role}.md.j2")
    return frozenset(jinja2.meta.find_undeclared_variables(environment.parse(source)))


def _placeholders(role: str) -> frozenset[str]:
    try:
        return PLACEHOLDERS[role]
    except KeyError:
        raise PromptError(f"no prompt for role {role!r}; roles are {list(ROLES)}") from None


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("procs.loop", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # prompts are plain text, not HTML
        keep_trailing_newline=True,
    )
