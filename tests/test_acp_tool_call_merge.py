"""merged_tool_call: a permission request is completed from what session/update said of
the same tool call, never changed by it (pure, no processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procs.agent.permissions import decide, merged_tool_call
from procs.agent.roles import RolePolicy

KNOWN = {"kind": "edit", "title": "Write", "locations": [{"path": "/ws/a.py"}],
         "rawInput": {"file_path": "/ws/a.py"}}  # fmt: skip


def test_what_the_request_leaves_out_or_empty_is_filled() -> None:
    call: dict[str, Any] = {"toolCallId": "c1", "kind": None, "locations": [], "rawInput": {}}
    assert merged_tool_call(KNOWN, call) == {"toolCallId": "c1", **KNOWN}


def test_the_requests_own_fields_win() -> None:
    call = {"toolCallId": "c1", "kind": "read", "locations": [{"path": "/ws/b.py"}]}
    merged = merged_tool_call(KNOWN, call)
    assert (merged["kind"], merged["locations"]) == ("read", [{"path": "/ws/b.py"}])
    assert merged["rawInput"] == KNOWN["rawInput"]


def test_nothing_known_leaves_the_request_as_it_is() -> None:
    call = {"toolCallId": "c1"}
    assert merged_tool_call(None, call) is call
    assert merged_tool_call({}, call) is call


def test_a_merged_edit_is_judged_by_its_paths(tmp_path: Path) -> None:
    known = {"kind": "edit", "locations": [{"path": str(tmp_path / "tests" / "test_a.py")}]}
    call = merged_tool_call(known, {"toolCallId": "c1"})
    decision = decide(RolePolicy.for_role("implementer"), tmp_path, call)
    assert not decision.allow and "may not write tests" in decision.reason
    assert not decide(RolePolicy.for_role("implementer"), tmp_path, {"toolCallId": "c1"}).allow


def test_a_command_in_the_workspace_root_is_judged_by_the_role(tmp_path: Path) -> None:
    """opencode names the workspace itself as a shell call's location (its cwd)."""
    known = {"kind": "execute", "locations": [{"path": str(tmp_path)}]}
    call = merged_tool_call(known, {"toolCallId": "c1"})
    runner = RolePolicy.for_role("implementer", may_execute=True)
    assert decide(runner, tmp_path, call).allow
    refused = decide(RolePolicy.for_role("implementer"), tmp_path, call)
    assert (refused.allow, refused.reason) == (False, "role implementer may not run commands")
    edit = {"kind": "edit", "locations": [{"path": str(tmp_path)}]}
    assert not decide(RolePolicy.for_role("architect"), tmp_path, edit).allow
