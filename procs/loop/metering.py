"""Metering: a loop's agent turns, counted and budgeted by the model gateway.

The gateway (procs/llm/gateway_service.py) is reached on its control socket
`<runtime>/model_gateway.sock` (this process kind may not import procs.llm):

    token  {"bead", "loop", "budget_tokens"?}   at the loop's start (Meter.open)
    turn   {"token", "role"}                   before each role turn
    usage  {"bead"}                            after each turn (and once at the start)
    revoke {"token"}                           at the loop's end (MeteredTurns.close)

The agent is handed the gateway's URL and the token (KeptAgentTurns' `model`), so every
model call of the bead's agents is counted per bead and role, and the gateway refuses
calls past the bead's budget (429). MeteredTurns wraps the loop's AgentTurns: after a
turn, a bead over its budget raises TurnFailed with the gateway's reason, which fails
the loop with it; before a turn, a bead already over (a resumed loop) fails the same way
without starting the agent. A turn that failed for its own reason (the agent gave up on
the 429s) fails with the budget's reason when the bead is over budget.

Every call is bounded (CALL_TIMEOUT_S). A gateway that stops answering mid-loop fails
the turn (TurnFailed naming it): the loop cannot count, so it does not go on. A loop
SIGKILLed before its end leaves its token live until its restart asks for a new one (the
gateway then revokes the old: one live token per loop id; the bead's counts
and budget are per bead, so a restarted loop's new token goes on from them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc import control
from procs.loop.turns import AgentTurns, Turn, TurnFailed, TurnReply

ENDPOINT = "model_gateway"  # <runtime>/model_gateway.sock
CALL_TIMEOUT_S = 10.0


class GatewayUnavailable(RuntimeError):
    """The gateway does not answer, or cannot serve this loop; the message says why."""


class GatewayNotAnswering(GatewayUnavailable):
    """Nothing answered on the socket in time (none listens, a stale socket, a hang)."""


@dataclass(frozen=True)
class MeterGrant:
    """The loop's token and the gateway's URLs (the agent's base URL by API kind)."""

    bead: str
    token: str = field(repr=False)
    openai_base_url: str
    anthropic_base_url: str

    def base_url(self, api: str) -> str:
        """The URL an agent speaking `api` takes: OpenAI's (Chat, Responses) with /v1,
        the others (Anthropic, Gemini) the gateway's root."""
        return self.openai_base_url if api in ("openai", "responses") else self.anthropic_base_url


class Meter:
    """The gateway's control socket, as a loop speaks to it."""

    def __init__(self, socket: Path, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.socket = socket
        self.timeout_s = timeout_s

    def call(self, command: str, args: dict[str, Any]) -> Any:
        """One call; raises GatewayNotAnswering (GatewayUnavailable for a refusal) naming
        the socket and the error."""
        try:
            return control.call(self.socket, command, args, timeout=self.timeout_s)
        except control.RemoteError as exc:
            raise GatewayUnavailable(
                f"the model gateway at {self.socket} refused {command}: {exc}"
            ) from None
        except control.ControlError as exc:
            raise GatewayNotAnswering(
                f"the model gateway at {self.socket} did not answer {command}: {exc}"
            ) from None

    def check(self, kind: str, base_url: str | None = None) -> None:
        """The gateway answers and has an upstream of `kind` (at `base_url`, when given).
        Raises GatewayUnavailable naming what is missing."""
        status = self.call("status", {})
        upstreams = status.get("upstreams") if isinstance(status, dict) else None
        found = [u for u in (upstreams or {}).values()
                 if isinstance(u, dict) and u.get("kind") == kind]  # fmt: skip
        if not found:
            raise GatewayUnavailable(f"the model gateway at {self.socket} has no {kind} upstream")
        urls = [str(u.get("base_url", "")).rstrip("/") for u in found]
        if base_url is not None and base_url.rstrip("/") not in urls:
            raise GatewayUnavailable(
                f"the model gateway at {self.socket} sends {kind} calls to {urls[0]}, "
                f"not to [loop.model] base_url {base_url}"
            )

    def open(self, bead: str, loop: str, budget_tokens: int | None) -> MeterGrant:
        """A token for the loop's bead (setting its budget when given)."""
        args: dict[str, Any] = {"bead": bead, "loop": loop}
        if budget_tokens is not None:
            args["budget_tokens"] = budget_tokens
        reply = self.call("token", args)
        try:
            return MeterGrant(bead=bead, token=reply["token"],
                              openai_base_url=reply["openai_base_url"],
                              anthropic_base_url=reply["anthropic_base_url"])  # fmt: skip
        except (KeyError, TypeError):
            raise GatewayUnavailable(f"the model gateway's token reply is malformed: "
                                     f"{reply!r:.200}") from None  # fmt: skip


class MeteredTurns:
    """AgentTurns whose every turn is attributed to its role and checked against the
    bead's budget (see the module docstring). `close()` (also `with`) revokes the token
    and closes the inner turns; `usage` is the gateway's last answer (None before any)."""

    def __init__(self, inner: AgentTurns, meter: Meter, grant: MeterGrant) -> None:
        self.inner = inner
        self.meter = meter
        self.grant = grant
        self.usage: dict[str, Any] | None = None
        self.refreshed = 0
        self.revoke_error: str | None = None
        self._closed = False

    def auditor(self, turn: Turn) -> TurnReply:
        return self._run(turn, self.inner.auditor)

    def implementer(self, turn: Turn) -> TurnReply:
        return self._run(turn, self.inner.implementer)

    def architect(self, turn: Turn) -> TurnReply:
        return self._run(turn, self.inner.architect)

    def reviewer(self, turn: Turn) -> TurnReply:
        return self._run(turn, self.inner.reviewer)

    def refresh(self) -> dict[str, Any]:
        """The bead's usage now (kept in `usage`); raises GatewayUnavailable."""
        usage = self.meter.call("usage", {"bead": self.grant.bead})
        if not isinstance(usage, dict):
            raise GatewayUnavailable(f"the model gateway's usage reply is malformed: "
                                     f"{usage!r:.200}")  # fmt: skip
        self.usage = usage
        self.refreshed += 1
        return usage

    def over_budget(self) -> str | None:
        """The gateway's reason when the bead's last known usage is over its budget."""
        if self.usage is not None and self.usage.get("over_budget"):
            return str(self.usage.get("reason") or f"bead {self.grant.bead} is over its budget")
        return None

    def _run(self, turn: Turn, run: Callable[[Turn], TurnReply]) -> TurnReply:
        try:
            if self.usage is None:
                self.refresh()
            if (reason := self.over_budget()) is not None:
                raise TurnFailed(reason)
            self.meter.call("turn", {"token": self.grant.token, "role": turn.role})
        except GatewayUnavailable as exc:
            raise TurnFailed(f"{turn.role} turn not started: {exc}") from None
        try:
            reply = run(turn)
        except TurnFailed:
            with contextlib.suppress(GatewayUnavailable):
                self.refresh()
            if (reason := self.over_budget()) is not None:
                raise TurnFailed(reason) from None
            raise
        try:
            self.refresh()
        except GatewayUnavailable as exc:
            raise TurnFailed(f"{turn.role} turn not counted: {exc}") from None
        if (reason := self.over_budget()) is not None:
            raise TurnFailed(reason)
        return reply

    def close(self) -> None:
        """Revoke the token and close the inner turns. Idempotent. A gateway gone by now
        is no error (the loop has ended): why is kept in `revoke_error`."""
        if self._closed:
            return
        self._closed = True
        try:
            self.meter.call("revoke", {"token": self.grant.token})
        except GatewayUnavailable as exc:
            self.revoke_error = str(exc)
        finally:
            close = getattr(self.inner, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> MeteredTurns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return {"bead": self.grant.bead, "usage_calls": self.refreshed, "usage": self.usage}
