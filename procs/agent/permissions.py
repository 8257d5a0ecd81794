"""session/request_permission decided by the role: which tool calls an agent may make.

A pure function over the request's data: the tool kind, the paths it names (locations and
the path-like fields of rawInput), and the role. Edits must name at least one path and
every path must pass the role's write rule; reads and searches must stay in the
workspace; shell execution needs `may_execute`; anything else (fetch, mode switches,
opencode's external_directory, unknown kinds) is refused unless the role lists the kind.
The agent gets "allow once", never "always", so every call is asked again. A request
that leaves out fields the agent already sent in session/update for the same tool call
(kind, locations, rawInput) is judged on the merged call (merged_tool_call).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs.agent.roles import PathRefused, RolePolicy, check_write, resolve_in_workspace

WRITE_KINDS = frozenset({"edit", "delete", "move"})
READ_KINDS = frozenset({"read", "search", "think"})
PATH_KEYS = ("filePath", "filepath", "file_path", "path", "parentDir", "directory", "target")


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str


def paths_named(tool_call: dict[str, Any]) -> list[str]:
    """Every path a tool call names, from `locations` and rawInput's path-like fields."""
    found: list[str] = []
    for location in tool_call.get("locations") or []:
        if isinstance(location, dict) and isinstance(location.get("path"), str):
            found.append(location["path"])
    raw_input = tool_call.get("rawInput")
    if isinstance(raw_input, dict):
        found.extend(raw_input[key] for key in PATH_KEYS if isinstance(raw_input.get(key), str))
    return list(dict.fromkeys(found))


# What a permission request may leave out and session/update already said (ACP lets a
# tool call's fields come in any of its updates).
MERGED_KEYS = ("kind", "title", "locations", "rawInput")


def merged_tool_call(known: dict[str, Any] | None, call: dict[str, Any]) -> dict[str, Any]:
    """The permission request's `call` with what the agent sent earlier for the same
    toolCallId (`known`, from session/update) filling the fields it leaves out or empty.
    The request's own fields win: merging never changes what it says, only completes it."""
    if not known:
        return call
    merged = dict(call)
    for key in MERGED_KEYS:
        if merged.get(key) in (None, "", [], {}) and known.get(key) not in (None, "", [], {}):
            merged[key] = known[key]
    return merged


def decide(policy: RolePolicy, workspace: Path, tool_call: dict[str, Any]) -> Decision:
    """Allow or refuse one tool call (the ACP ToolCallUpdate as JSON, camelCase keys)."""
    kind = tool_call.get("kind") or "other"
    paths = paths_named(tool_call)
    role = policy.role.value
    try:
        for path in paths:  # whatever the kind, a path outside the workspace is refused
            if not _is_workspace(workspace, path):  # (a command's cwd may be the root)
                resolve_in_workspace(workspace, path)
        if kind in WRITE_KINDS:
            if not paths:
                return Decision(False, f"{kind} names no path; {role} edits must name one")
            for path in paths:
                check_write(policy, workspace, path)
            return Decision(True, f"{role} may {kind} {', '.join(paths)}")
        if kind in READ_KINDS:
            return Decision(True, f"{kind} inside the workspace")
    except PathRefused as exc:
        return Decision(False, str(exc))
    if kind == "execute":
        if policy.may_execute:
            return Decision(True, f"{role} may run commands")
        return Decision(False, f"role {role} may not run commands")
    if kind in policy.extra_kinds:
        return Decision(True, f"{role} allows {kind}")
    return Decision(False, f"role {role} does not allow {kind!r} tool calls ({paths or 'no path'})")


def _is_workspace(workspace: Path, raw: str) -> bool:
    """Whether `raw` names the workspace directory itself (a search's or a command's
    directory; never writable: check_write refuses it)."""
    if not raw or "\x00" in raw:
        return False
    candidate = Path(raw) if os.path.isabs(raw) else workspace / raw
    try:
        return candidate.resolve() == workspace.resolve()
    except (OSError, RuntimeError):
        return False


def pick_option(options: list[dict[str, Any]], allow: bool) -> str | None:
    """The optionId for allow-once (or reject-once); None when the agent offers none."""
    wanted = ("allow_once",) if allow else ("reject_once", "reject_always")
    for kind in wanted:
        for option in options:
            if option.get("kind") == kind:
                return str(option.get("optionId"))
    return None
