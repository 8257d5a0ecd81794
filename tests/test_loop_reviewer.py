"""The reviewer through the router's `route` command, over a real control socket: the
request is one the router's own codec accepts, the answer is the turn's reply, and every
way the call can fail is a TurnFailed naming why (the loop fails with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipc import control
from procs.llm.types import LLMRequest
from procs.loop.reviewer import RoutedReviewer, router_answers
from procs.loop.state import FactoryLoopState
from procs.loop.turns import Turn, TurnFailed, TurnReply
from tests.helpers.control_server import serving

pytestmark = pytest.mark.integration  # a real socket and a serving thread


class Agents:
    """Stands in for the agents: records which roles reached them."""

    def __init__(self) -> None:
        self.roles: list[str] = []

    def _turn(self, turn: Turn) -> TurnReply:
        self.roles.append(turn.role)
        return TurnReply(text=f"{turn.role} done")

    auditor = implementer = architect = reviewer = _turn


def turn(role: str, tmp_path: Path) -> Turn:
    state = FactoryLoopState(loop_id="l1", bead_id="bd-1", attempt=1,
                             workspace=str(tmp_path), golden_hash="0" * 40)  # fmt: skip
    return Turn(role=role, workspace=tmp_path, system_prompt="You are the REVIEWER.",
                prompt="Review this diff.", state=state)  # fmt: skip


def test_the_review_is_one_route_call_and_other_roles_stay_with_the_agents(
    tmp_path: Path,
) -> None:
    seen: list[dict[str, Any]] = []

    def router(command: str, args: dict[str, Any]) -> Any:
        seen.append(args)
        if command == "status":
            return {}
        request = LLMRequest.from_dict(args["request"])  # what procs.llm.service does
        if args["role"] != "reviewer":
            raise control.RequestRefused("no route", "UnknownRole")
        if "spent" in request.prompt:
            raise control.RequestRefused("reviewer: spent 5.00 of 5.00 today", "BudgetExceeded")
        return {"content": 'LGTM\nFACTORY_RESULT {"status": "approve"}', "usage": {}}

    socket = tmp_path / "llm_router.sock"
    agents = Agents()
    reviewer = RoutedReviewer(agents, socket, timeout_s=5)
    with serving(socket, router):
        assert router_answers(socket) is None
        reply = reviewer.reviewer(turn("reviewer", tmp_path))
        assert [reviewer.auditor(turn("auditor", tmp_path)).text,
                reviewer.architect(turn("architect", tmp_path)).text] == [
            "auditor done", "architect done"]  # fmt: skip
        spent = turn("reviewer", tmp_path)
        spent = Turn(spent.role, spent.workspace, spent.system_prompt, "spent", spent.state)
        with pytest.raises(TurnFailed, match=r"refused the review \(BudgetExceeded: reviewer: "):
            reviewer.reviewer(spent)
    assert reply.text.startswith("LGTM") and agents.roles == ["auditor", "architect"]
    prompt = seen[1]["request"]["prompt"]
    assert prompt == "You are the REVIEWER.\n\nReview this diff." and seen[1]["timeout_s"] == 5


def test_no_router_is_a_clear_failure(tmp_path: Path) -> None:
    socket = tmp_path / "nobody.sock"
    assert "no LLM router answers on" in (router_answers(socket, timeout_s=1) or "")
    with pytest.raises(TurnFailed, match=r"no review: the LLM router at .*nobody\.sock"):
        RoutedReviewer(Agents(), socket, timeout_s=1).reviewer(turn("reviewer", tmp_path))
