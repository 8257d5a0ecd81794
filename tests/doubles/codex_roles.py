"""TEST DOUBLE of a model playing the loop's roles for real Codex (codex-acp), over OpenAI
Responses: tool_models.ResponsesToolModel's server, its script chosen by the loop's role.

It never runs a model. The loop puts the role's standing instructions first in its
prompt ("You are the AUDITOR ...", procs/loop/templates/*_system.md.j2); each role's
turns are taken in order, one per new prompt (a prompt seen again gets the same turn).
Within a turn, the number of tool results the request holds is the step: each of the
turn's patches goes out as Codex's own edit (`exec_command` running an `apply_patch`
heredoc, which Codex turns into a permission request), then the final text with the
loop's `FACTORY_RESULT {json}` line. A request with no role's prompt (a side request)
gets "ok"; one the turns cannot answer gets an off-script final text and is listed in
`off_script`.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from tests.doubles.tool_models import ResponsesToolModel

_ROLE_LINE = re.compile(r"^You are the (AUDITOR|IMPLEMENTER|ARCHITECT|REVIEWER)\b", re.M)


def add_file(path: str, content: str) -> str:
    """An apply_patch body creating `path` (relative to the workspace)."""
    body = "".join(f"+{line}\n" for line in content.splitlines())
    return f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n"


def append_to(path: str, last_line: str, added: str) -> str:
    """An apply_patch body adding the lines of `added` after `last_line`, the file's
    last line (Codex reads the file to apply it)."""
    body = "".join(f"+{line}\n" for line in added.splitlines())
    return f"*** Begin Patch\n*** Update File: {path}\n@@\n {last_line}\n{body}*** End Patch\n"


@dataclass(frozen=True)
class CodexTurn:
    """One role turn: its patches in order, then `text` and the FACTORY_RESULT line."""

    patches: tuple[str, ...]
    result: dict[str, Any]
    text: str = "Done."

    def final_text(self) -> str:
        return f"{self.text}\nFACTORY_RESULT {json.dumps(self.result)}"


class CodexRoleModel(ResponsesToolModel):
    """The turns' model at `base_url` (with /v1). `prompts[role]`: each turn's prompt, in
    the order first seen; `off_script`: what could not be answered."""

    def __init__(self, turns: dict[str, list[CodexTurn]]) -> None:
        super().__init__()
        self.turns = turns
        self.prompts: dict[str, list[str]] = {role: [] for role in turns}
        self.off_script: list[str] = []
        self._seen: dict[str, int] = {}
        self._roles_lock = threading.Lock()

    def _choose(self, texts: list[str], results: list[str]) -> tuple[dict[str, Any] | None, str]:
        prompt = next((t for t in texts if _ROLE_LINE.search(t)), None)
        if prompt is None:
            return None, "ok"
        found = _ROLE_LINE.search(prompt)
        assert found is not None
        role = found.group(1).lower()
        with self._roles_lock:
            if results:  # the latest conversation's (what Codex told the model of its edits)
                self.tool_results[:] = results
            turns = self.turns.get(role, [])
            if prompt not in self._seen:
                self._seen[prompt] = len(self.prompts.setdefault(role, []))
                self.prompts[role].append(prompt)
            index = self._seen[prompt]
            if index >= len(turns):
                why = f"{role} turn {index + 1} of {len(turns)}"
                self.off_script.append(why)
                return None, f'Off script: {why}\nFACTORY_RESULT {{"status": "off_script"}}'
        turn = turns[index]
        if len(results) < len(turn.patches):
            command = f"apply_patch <<'EOF'\n{turn.patches[len(results)]}EOF\n"
            return {"tool": "exec_command", "input": {"cmd": command}}, ""
        return None, turn.final_text()
