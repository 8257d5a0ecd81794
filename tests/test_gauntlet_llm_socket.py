"""llm_judge over a real control socket: the request is the router service's `route`
(role, timeout_s, an LLMRequest the router's own codec accepts), a FAIL comes back as
findings, and the router's UnknownRole and BudgetExceeded error replies skip the stage
with the router's words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipc import control
from procs.gauntlet import Change, GauntletConfig, LlmJudge, Verdict
from procs.llm.types import LLMRequest
from tests.helpers.control_server import serving

pytestmark = pytest.mark.integration


def test_the_judge_speaks_the_routers_route_command(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def router(command: str, args: dict[str, Any]) -> Any:
        seen.append((command, args))
        LLMRequest.from_dict(args["request"])  # what procs.llm.service does with it
        if args["role"] == "judge":
            return {"content": '{"verdict": "FAIL", "reasons": ["returns a literal"]}',
                    "usage": {}, "endpoint": "local"}  # fmt: skip
        if args["role"] == "broke":
            raise control.RequestRefused("judge: spent 5.00 of 5.00 today", "BudgetExceeded")
        raise control.RequestRefused(f"no route for role {args['role']!r}", "UnknownRole")

    socket = tmp_path / "llm_router.sock"
    change = Change.from_texts(tmp_path, {"m.py": ("x = 1\n", "x = 2\n")})
    with serving(socket, router):
        judged = LlmJudge().run(change, GauntletConfig(router_socket=socket, llm_timeout_s=5))
        unrouted = LlmJudge().run(change, GauntletConfig(router_socket=socket,
                                                         judge_role="nobody"))  # fmt: skip
        broke = LlmJudge().run(change, GauntletConfig(router_socket=socket, judge_role="broke"))
    assert judged.verdict is Verdict.REJECT
    assert [f.message for f in judged.findings] == ["returns a literal"]
    command, args = seen[0]
    assert command == "route" and args["role"] == "judge" and args["timeout_s"] == 5
    assert unrouted.verdict is Verdict.SKIPPED and "no route for role 'nobody'" in unrouted.reason
    assert broke.verdict is Verdict.SKIPPED and "budget is spent" in broke.reason
