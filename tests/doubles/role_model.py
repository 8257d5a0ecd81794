"""TEST DOUBLE of a coding model that plays the loop's four roles, for a real agent (opencode).

An OpenAI-compatible chat-completions server (openai_chat.ChatCompletionsDouble's machinery)
that answers each request from a Scenario instead of a flat script. It never runs a model:

- Which role is speaking: the loop puts the role's standing instructions first in the
  prompt ("You are the AUDITOR ...", procs/loop/templates/*_system.md.j2), so the first
  user message names the role.
- Which turn of the scenario: each role's turns are taken in order, one per new prompt.
  A prompt already seen (the agent retried a request, or a resumed loop redid the phase)
  gets the same turn again, never the next one.
- Which step of the turn: the number of assistant messages in the request (each is a tool
  call the agent already made; opencode sends the whole conversation every time). A turn
  answers its actions as tool calls (opencode's `write`, `edit`, `bash`), one per
  request, then its final text ending with the `FACTORY_RESULT {json}` line.

Scenario(requirements=[Requirement(...)], architect=[...], review=...) lays the turns out:

    auditor      for each requirement: its refused tests (e.g. a collection error),
                 then its test; at the end REQUIREMENTS_COMPLETE
    implementer  for each requirement: each attempt in order (wrong or cheating ones
                 first, the honest one last)
    architect    its turns in order (a turn with no actions changes nothing)
    reviewer     one turn: the review text, approving

A turn may name `expect`, texts its prompt must contain (the implementer's "attempt 2
of"), and `absent`, texts it must not (an auditor asked again has feedback). A request
the scenario cannot answer (an unknown role, a role out of turns, a prompt that is not
as expected) gets a final text with status "off_script" and is listed in `off_script`,
so a test can say what diverged. Requests that offer no tools (opencode's title helper)
get a fixed text, as ChatCompletionsDouble does. RoleModel is a ChatCompletionsDouble
whose `_next_reply` (where a reply is chosen) reads the scenario.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.openai_chat import (
    ChatCompletionsDouble,
    RecordedRequest,
    Reply,
    TextReply,
    ToolCallReply,
)

ROLES = ("auditor", "implementer", "architect", "reviewer")
FRESH_ITERATION = "None: this is a fresh iteration."  # the auditor's prompt, no feedback
_ROLE_LINE = re.compile(r"\AYou are the (AUDITOR|IMPLEMENTER|ARCHITECT|REVIEWER)\b")


@dataclass(frozen=True)
class Write:
    """opencode's `write` tool: the whole file (a path relative to the workspace)."""

    path: str
    content: str

    def call(self) -> ToolCallReply:
        return ToolCallReply("write", {"filePath": self.path, "content": self.content})


@dataclass(frozen=True)
class Edit:
    """opencode's `edit` tool: replace `old` by `new` in the file."""

    path: str
    old: str
    new: str

    def call(self) -> ToolCallReply:
        return ToolCallReply(
            "edit", {"filePath": self.path, "oldString": self.old, "newString": self.new}
        )


@dataclass(frozen=True)
class Shell:
    """opencode's `bash` tool."""

    command: str

    def call(self) -> ToolCallReply:
        return ToolCallReply("bash", {"command": self.command, "description": self.command})


Action = Write | Edit | Shell


@dataclass(frozen=True)
class RoleTurn:
    """One turn of one role: tool calls in order, then `text` and the FACTORY_RESULT line."""

    actions: tuple[Action, ...] = ()
    result: dict[str, Any] = field(default_factory=dict)
    text: str = "Done."
    expect: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()

    def final_text(self) -> str:
        return f"{self.text}\nFACTORY_RESULT {json.dumps(self.result)}"


@dataclass(frozen=True)
class Attempt:
    """One implementer attempt: what it writes, and what it says it did."""

    actions: tuple[Action, ...]
    summary: str


@dataclass(frozen=True)
class Requirement:
    """One requirement of the bead: the auditor's test file (`test_path`, whole `test`,
    `test_name` the function it adds), the tests it writes first and has refused
    (`refused_tests`: contents of `test_path`), and the implementer's `attempts` in order
    (the last one honest)."""

    name: str
    test_path: str
    test: str
    test_name: str
    attempts: tuple[Attempt, ...]
    refused_tests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    requirements: tuple[Requirement, ...]
    architect: tuple[tuple[Action, ...], ...] = ()
    review: str = "Correct against the requirements; the tests pin each behaviour."

    def turns(self) -> dict[str, list[RoleTurn]]:
        """Each role's turns in the order the loop asks for them."""
        auditor: list[RoleTurn] = []
        implementer: list[RoleTurn] = []
        for req in self.requirements:
            test_id = f"{req.test_path}::{req.test_name}"
            for refused in req.refused_tests:
                auditor.append(_test_written(req, refused, test_id))
            # after a refusal the loop hands the auditor its reason as feedback
            absent = (FRESH_ITERATION,) if req.refused_tests else ()
            auditor.append(_test_written(req, req.test, test_id, absent=absent))
            for number, attempt in enumerate(req.attempts, 1):
                implementer.append(RoleTurn(
                    actions=attempt.actions, text=f"Implemented {req.name}.",
                    result={"status": "implemented", "summary": attempt.summary},
                    expect=(f"attempt {number} of",),
                ))  # fmt: skip
        covered = ", ".join(f"{r.name}: {r.test_path}" for r in self.requirements)
        auditor.append(RoleTurn(
            text="Every requirement has a passing test.",
            result={"status": "requirements_complete", "reasoning": covered},
        ))  # fmt: skip
        architect = [
            RoleTurn(actions=actions, text="Refactored." if actions else "Nothing to change.",
                     result={"status": "refactored" if actions else "no_change",
                             "lines_after": 0, "summary": "clearer names, same behaviour"
                             if actions else "fine as is"})
            for actions in self.architect
        ]  # fmt: skip
        reviewer = [RoleTurn(text=self.review, result={"status": "approve", "issues": []})]
        return {"auditor": auditor, "implementer": implementer, "architect": architect,
                "reviewer": reviewer}  # fmt: skip


def _test_written(req: Requirement, content: str, test_id: str,
                  absent: tuple[str, ...] = ()) -> RoleTurn:  # fmt: skip
    return RoleTurn(
        actions=(Write(req.test_path, content),), text=f"Wrote a failing test for {req.name}.",
        result={"status": "test_written", "test": test_id,
                "reasoning": f"drives {req.name}"},
        absent=absent,
    )  # fmt: skip


@dataclass(frozen=True)
class OffScript:
    """A request the scenario could not answer, and why."""

    role: str
    reason: str
    prompt_head: str


class RoleModel(ChatCompletionsDouble):
    """The scenario's model at `base_url` (an OpenAI-compatible /v1). Thread-safe.

    `prompts[role]`: the prompts of the role's turns, in the order first seen.
    `off_script`: what could not be answered. `unused()`: turns never asked for.
    """

    def __init__(self, scenario: Scenario, *, model: str = "role-model") -> None:
        super().__init__([], model=model)
        self.scenario = scenario
        self._turns = scenario.turns()
        self._by_prompt: dict[str, tuple[str, int]] = {}
        self._role_lock = threading.Lock()
        self.prompts: dict[str, list[str]] = {role: [] for role in ROLES}
        self.off_script: list[OffScript] = []

    def unused(self) -> dict[str, int]:
        """Per role, the planned turns no prompt has reached yet."""
        with self._role_lock:
            return {role: len(self._turns[role]) - len(self.prompts[role]) for role in ROLES
                    if len(self._turns[role]) > len(self.prompts[role])}  # fmt: skip

    def _next_reply(self, body: dict[str, Any]) -> tuple[Reply, RecordedRequest]:
        scripted = bool(body.get("tools"))
        record = RecordedRequest(body=body, scripted=scripted)
        with self._lock:
            self.requests.append(record)
        if not scripted:
            return TextReply("Scripted title"), record
        return self._answer(body.get("messages") or []), record

    def _answer(self, messages: Sequence[dict[str, Any]]) -> Reply:
        prompt = prompt_text(messages)
        found = _ROLE_LINE.match(prompt.lstrip())
        if found is None:
            return self._off("?", "no role's standing instructions open the prompt", prompt)
        role = found.group(1).lower()
        with self._role_lock:
            if prompt not in self._by_prompt:
                self._by_prompt[prompt] = (role, len(self.prompts[role]))
                self.prompts[role].append(prompt)
            _, index = self._by_prompt[prompt]
        if index >= len(self._turns[role]):
            return self._off(role, f"the scenario has {len(self._turns[role])} {role} turns "
                             f"and this is turn {index + 1}", prompt)  # fmt: skip
        turn = self._turns[role][index]
        missing = [text for text in turn.expect if text not in prompt]
        present = [text for text in turn.absent if text in prompt]
        if missing or present:
            return self._off(role, f"turn {index + 1}'s prompt lacks {missing} or has "
                             f"{present}", prompt)  # fmt: skip
        step = sum(1 for m in messages if m.get("role") == "assistant")
        if step < len(turn.actions):
            return turn.actions[step].call()
        return TextReply(turn.final_text())

    def _off(self, role: str, reason: str, prompt: str) -> TextReply:
        with self._role_lock:
            self.off_script.append(OffScript(role, reason, prompt[:300]))
        result = json.dumps({"status": "off_script"})
        return TextReply(f"Off script: {reason}\nFACTORY_RESULT {result}")


def prompt_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of a request's first user message: the loop's prompt for the turn."""
    return next((_text(m) for m in messages if m.get("role") == "user"), "")


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
