"""The reviewer through the LLM router (fs-140…143), the other roles through the agents.

The reviewer changes nothing: it reads the requirements, the statistics and the whole
diff, and reports. So it needs no agent, no workspace and no tools, only one model call
under the router's `reviewer` role (Anthropic by default), where the router's budgets,
breaker and usage counts apply (DESIGN.md, "Direct calls").

    RoutedReviewer(agents, socket).reviewer(turn)  ->  TurnReply(the model's answer)

A call that cannot be made (no router listening, no route or key for the role, the
budget spent, the breaker open, a timeout) raises TurnFailed naming why: the loop then
fails with that reason rather than landing unreviewed work silently. `router_answers`
lets a runner check, before it changes anything, that a router is there.
"""

from __future__ import annotations

from pathlib import Path

from ipc import control
from procs.loop.turns import AgentTurns, Turn, TurnFailed, TurnReply

ROUTER_ENDPOINT = "llm_router.sock"
MAX_TOKENS = 2048


class RoutedReviewer:
    """AgentTurns whose reviewer is a router call; every other role goes to `agents`."""

    def __init__(
        self,
        agents: AgentTurns,
        socket: Path,
        *,
        role: str = "reviewer",
        timeout_s: float = 300.0,
        call: control.Caller = control.call,
    ) -> None:
        self.agents = agents
        self.socket = socket
        self.role = role
        self.timeout_s = timeout_s
        self.call = call

    def auditor(self, turn: Turn) -> TurnReply:
        return self.agents.auditor(turn)

    def implementer(self, turn: Turn) -> TurnReply:
        return self.agents.implementer(turn)

    def architect(self, turn: Turn) -> TurnReply:
        return self.agents.architect(turn)

    def reviewer(self, turn: Turn) -> TurnReply:
        request = {"model": "", "prompt": f"{turn.system_prompt}\n\n{turn.prompt}",
                   "max_tokens": MAX_TOKENS, "temperature": 0.0}  # fmt: skip
        args = {"role": self.role, "timeout_s": self.timeout_s, "request": request}
        try:
            result = self.call(self.socket, "route", args, timeout=self.timeout_s + 5.0)
        except control.RemoteError as exc:
            raise TurnFailed(f"the router refused the review ({exc.type}: {exc})") from None
        except control.ControlError as exc:
            raise TurnFailed(f"no review: the LLM router at {self.socket}: {exc}") from None
        content = result.get("content") if isinstance(result, dict) else None
        if not isinstance(content, str) or not content.strip():
            raise TurnFailed(f"the router's review has no content: {result!r:.200}")
        return TurnReply(text=content)


def router_answers(socket: Path, *, timeout_s: float = 5.0) -> str | None:
    """None when a router answers `status` on `socket`, else why not (for a clear error
    before a run starts)."""
    try:
        control.call(socket, "status", {}, timeout=timeout_s)
    except control.ControlError as exc:
        return f"no LLM router answers on {socket}: {exc}"
    return None
