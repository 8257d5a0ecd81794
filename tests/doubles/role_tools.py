"""TEST DOUBLES of a model playing the loop's roles for real agents: Codex (codex-acp, over
OpenAI Responses) and Claude (claude-agent-acp, over Anthropic Messages), on
tool_models' servers, the script chosen by the loop's role instead of a DOUBLE_ACTIONS
line.

They never run a model. The loop puts the role's standing instructions first in its
prompt ("You are the AUDITOR ...", procs/loop/templates/*_system.md.j2); each role's
turns are taken in order, one per new prompt (a prompt seen again gets the same turn).
Within a turn, the number of tool results the request holds is the step: each of the
turn's actions goes out as a call of the agent's own tool (Codex: `exec_command` running
an `apply_patch` heredoc; Claude: `Write`; each becomes a permission request), then the
final text with the loop's `FACTORY_RESULT {json}` line. A request that offers no tools
or holds no role's prompt (a title or other side request) gets "ok"; one the turns
cannot answer gets an off-script final text and is listed in `off_script`.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from tests.doubles.tool_models import AnthropicToolModel, ResponsesToolModel

_ROLE_LINE = re.compile(r"^You are the (AUDITOR|IMPLEMENTER|ARCHITECT|REVIEWER)\b", re.M)
Action = dict[str, Any]  # {"tool": NAME, "input": {...}}


def codex_patch(patch: str) -> Action:
    """Codex's edit: apply_patch through exec_command."""
    return {"tool": "exec_command", "input": {"cmd": f"apply_patch <<'EOF'\n{patch}EOF\n"}}


def add_file(path: str, content: str) -> Action:
    """Codex: create `path` (relative to the workspace)."""
    body = "".join(f"+{line}\n" for line in content.splitlines())
    return codex_patch(f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n")


def append_to(path: str, last_line: str, added: str) -> Action:
    """Codex: add the lines of `added` after `last_line`, the file's last line (Codex
    reads the file to apply it)."""
    body = "".join(f"+{line}\n" for line in added.splitlines())
    patch = f"*** Begin Patch\n*** Update File: {path}\n@@\n {last_line}\n{body}*** End Patch\n"
    return codex_patch(patch)


def claude_write(path: str, content: str) -> Action:
    """Claude: its Write tool, the whole file (`path` absolute)."""
    return {"tool": "Write", "input": {"file_path": path, "content": content}}


@dataclass(frozen=True)
class RoleTurn:
    """One role turn: its actions in order, then `text` and the FACTORY_RESULT line."""

    actions: tuple[Action, ...]
    result: dict[str, Any]
    text: str = "Done."

    def final_text(self) -> str:
        return f"{self.text}\nFACTORY_RESULT {json.dumps(self.result)}"


class _RolePlayer:
    """The role-choosing `_choose` both doubles share. `prompts[role]`: each turn's
    prompt, in the order first seen; `off_script`: what could not be answered."""

    tool_results: list[str]

    def _play(self, turns: dict[str, list[RoleTurn]]) -> None:
        self.turns = turns
        self.prompts: dict[str, list[str]] = {role: [] for role in turns}
        self.off_script: list[str] = []
        self._seen: dict[str, int] = {}
        self._roles_lock = threading.Lock()

    def _choose(
        self, texts: list[str], results: list[str], *, tools: bool = True
    ) -> tuple[Action | None, str]:
        prompt = next((t for t in texts if _ROLE_LINE.search(t)), None) if tools else None
        found = _ROLE_LINE.search(prompt) if prompt is not None else None
        if prompt is None or found is None:
            return None, "ok"
        role = found.group(1).lower()
        with self._roles_lock:
            if results:  # the latest conversation's (what the agent told of its edits)
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
        if len(results) < len(turn.actions):
            return turn.actions[len(results)], ""
        return None, turn.final_text()


class CodexRoleModel(_RolePlayer, ResponsesToolModel):
    """The turns' model for Codex at `base_url` (with /v1)."""

    def __init__(self, turns: dict[str, list[RoleTurn]]) -> None:
        ResponsesToolModel.__init__(self)
        self._play(turns)


class ClaudeRoleModel(_RolePlayer, AnthropicToolModel):
    """The turns' model for Claude at `base_url` (the host, as ANTHROPIC_BASE_URL)."""

    def __init__(self, turns: dict[str, list[RoleTurn]]) -> None:
        AnthropicToolModel.__init__(self)
        self._play(turns)
