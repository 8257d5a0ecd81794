"""KeptAgentTurns: AgentTurns through one kept agent per loop, a new session per turn.

The first turn starts `procs.agent.service --serve` (agent_service.AgentService), which
starts the agent (e.g. `opencode acp --pure`) once; every turn after it is one request
to that process: a new ACP session under the turn's role policy (the implementer's
session may not write tests/, the auditor's may write only tests), the prompt, the
session's end. So a turn after the first costs no agent start (opencode: ~4.4 s) and,
as the service opens the next session ahead of its turn, no session/new either. ACP has
no system-prompt field, so the role's standing instructions go first in the prompt text.

Restarts: an agent that died between turns (the service then says so and exits) is
started anew for the next turn, which runs as if nothing happened. One that dies during
a turn fails that turn (AgentCrashed naming it: the loop runs the turn again, bounded);
the next turn starts a new one. A turn
past its limit (its timeout, the cancel's grace, session/new, and a margin) stops the
service and fails the turn. The agent also restarts when a turn names another workspace.

A turn that cannot be done raises TurnFailed naming why: the agent died, timed out (our
timeout cancelled the turn), ignored the cancel or broke the protocol, the service could
not start (the RAM, the agent's own start), was stopped mid-turn (a signal to the loop's
group reaches it too: it cancels the turn and exits), or stopped answering. A turn the
role refused some of (TurnReply.outcome "refused", with the reasons) is a reply, never a
failure: it is the next turn's feedback.

Memory: with a ledger (ipc.ledger), the agent's expected RSS (`agent_ram_mb`; opencode
1.18 measured up to ~770 MB RSS, ~600 MB steady over 30 sessions: bench/agent_turns.py)
is reserved before the service starts, waiting at most `ram_wait_s`, and held
for as long as the agent lives; it is given back when the service exits (a restart
reserves again). `close()` (the loop's end; also `with`) stops the service and gives it
back.

The reviewer also runs here, as an agent that may write nothing, until it goes through
the router.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ipc.ledger import TicketLedger
from procs.loop.agent_service import (
    CLOSE_GRACE_S,
    AgentModel,
    AgentService,
    ServiceFailed,
    ServiceGone,
    ServiceSettings,
)
from procs.loop.config import RunnerConfig
from procs.loop.turns import AgentCrashed, Turn, TurnFailed, TurnReply

START_TIMEOUT_S = 90.0
IDLE_TIMEOUT_S = 3600.0
CANCEL_GRACE_S = 5.0
MARGIN_S = 30.0
# opencode 1.18.33, measured (bench/agent_turns.py): up to ~770 MB RSS after its first
# turn, ~600-630 MB steady over 30 kept sessions; the reservation covers the peak.
AGENT_RAM_MB = 800


class KeptAgentTurns:
    """AgentTurns over one kept agent (see the module docstring).

    `agent_command`: e.g. `opencode acp --pure`. `timeout_s`: one turn's limit (the
    service cancels the turn then, and the turn fails "timed out"). `start_timeout_s`:
    the agent's start and each session/new. `idle_timeout_s`: the service exits after
    this long without a turn (the next turn starts it again). `sandbox_mode`: how the
    agent's terminal commands run. `env`: the service's and the agent's whole environment
    (default: ours). `system_prompt_first`: put the role's standing instructions before
    the prompt (off only for scripted agents that parse the prompt). `ledger`,
    `agent_ram_mb`, `ram_wait_s`: the RAM reservation held while the agent lives.
    `model`: the agent's model endpoint and key, which the agent service writes into the
    agent's config (None: the agent's own config, in `env`). `sandbox_agent`: run each
    agent process itself in the sandbox of its role (--sandbox-role): then one agent per
    role is kept, each reserving `agent_ram_mb`. `profile`, `profiles_file`: the agent's
    profile (procs/agent/profiles.toml, or the operator's file; None: the one its
    command's basename picks), which says how the service starts and configures it.
    """

    def __init__(
        self,
        agent_command: Sequence[str],
        *,
        timeout_s: float = 600.0,
        start_timeout_s: float = START_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        cancel_grace_s: float = CANCEL_GRACE_S,
        sandbox_mode: str = "bwrap",
        env: Mapping[str, str] | None = None,
        system_prompt_first: bool = True,
        python: str = sys.executable,
        ledger: TicketLedger | None = None,
        agent_ram_mb: int = AGENT_RAM_MB,
        ram_wait_s: float = 60.0,
        model: AgentModel | None = None,
        sandbox_agent: bool = False,
        profile: str | None = None,
        profiles_file: Path | None = None,
    ) -> None:
        if not agent_command:
            raise ValueError("agent_command is empty")
        for name, value in (("timeout_s", timeout_s), ("start_timeout_s", start_timeout_s),
                            ("idle_timeout_s", idle_timeout_s)):  # fmt: skip
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.settings = ServiceSettings(
            agent_command=tuple(agent_command), python=python,
            env=dict(os.environ if env is None else env), timeout_s=timeout_s,
            start_timeout_s=start_timeout_s, idle_timeout_s=idle_timeout_s,
            cancel_grace_s=cancel_grace_s, sandbox_mode=sandbox_mode, model=model,
            profile=profile, profiles_file=profiles_file,
        )  # fmt: skip
        self.system_prompt_first = system_prompt_first
        self.ledger = ledger
        self.agent_ram_mb = agent_ram_mb
        self.ram_wait_s = ram_wait_s
        self.sandbox_agent = sandbox_agent
        # one service for every role; with sandbox_agent one per role (its locks), by role
        self.services: dict[str, AgentService] = {}
        self.starts = 0
        self.turns = 0
        self.outcomes: dict[str, int] = {}

    def auditor(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def implementer(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def architect(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def reviewer(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def close(self, *, grace_s: float = CLOSE_GRACE_S) -> None:
        """Stop the agent and give its RAM back; the next turn, if any, starts it again.
        The service gets `grace_s` to close its agent after stdin's EOF, then SIGTERM
        (AgentService.stop: about grace_s + 7 s at most)."""
        while self.services:
            _, service = self.services.popitem()
            service.stop(timeout_s=grace_s)

    def __enter__(self) -> KeptAgentTurns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def service(self) -> AgentService | None:
        """The service of the latest turn's role (None: no agent is running)."""
        return next(reversed(self.services.values()), None)

    def statistics(self) -> dict[str, Any]:
        service = self.service
        return {
            "agent_starts": self.starts, "turns": self.turns, "outcomes": dict(self.outcomes),
            "service_pid": service.process.pid if service else None,
            "agent_pid": service.agent_pid if service else None,
            "agents": len(self.services), "sandboxed_agent": self.sandbox_agent,
            "agent_sandbox": service.sandbox if service else None,  # its network, what not
            "holds_ram_mb": sum(self.agent_ram_mb for s in self.services.values()
                                if s.holds_ram),
        }  # fmt: skip

    def _service_for(self, turn: Turn) -> AgentService:
        """The running service for `turn`'s workspace (and role, when sandboxed), started
        (again) if need be."""
        key = turn.role if self.sandbox_agent else ""
        service = self.services.get(key)
        if service is not None and service.workspace == turn.workspace and service.alive():
            self.services[key] = self.services.pop(key)  # the latest last
            return service
        if service is not None or any(s.workspace != turn.workspace
                                      for s in self.services.values()):  # fmt: skip
            self.close()  # gone, or for another workspace: reaped, its RAM given back
        settings = self.settings
        if self.sandbox_agent:
            settings = dataclasses.replace(settings, sandbox_role=turn.role)
        try:
            service = AgentService.start(
                settings, turn.workspace, ledger=self.ledger, ram_mb=self.agent_ram_mb,
                ram_wait_s=self.ram_wait_s, label=f"loop {turn.state.loop_id} agent {key}",
            )  # fmt: skip
        except ServiceGone as exc:  # killed or crashed as it started: the turn runs again
            raise AgentCrashed(f"{turn.role} turn: {exc}") from None
        except ServiceFailed as exc:
            raise TurnFailed(f"{turn.role} turn: {exc}") from None
        self.starts += 1
        self.services[key] = service
        return service

    def _run(self, turn: Turn) -> TurnReply:
        text = f"{turn.system_prompt}\n\n{turn.prompt}" if self.system_prompt_first else turn.prompt
        request = {"role": turn.role, "prompt": text, "timeout_s": self.settings.timeout_s}
        self.turns += 1
        for attempt in (1, 2):  # a second only when the agent was gone before the turn began
            service = self._service_for(turn)
            limit = (
                self.settings.timeout_s + self.settings.cancel_grace_s
                + self.settings.start_timeout_s + MARGIN_S
            )  # fmt: skip
            try:
                answer = service.request(request, time.monotonic() + limit)
            except TimeoutError:  # it reads no stdin mid-turn: SIGTERM (it cancels) at once
                self.close(grace_s=0.0)
                raise TurnFailed(f"{turn.role} turn ran past {limit:.0f} s") from None
            except ServiceGone as exc:  # it may have begun the turn
                self.close()
                raise AgentCrashed(f"{turn.role} turn failed: {exc}") from None
            except ServiceFailed as exc:
                self.close()
                raise TurnFailed(f"{turn.role} turn failed: {exc}") from None
            if answer.get("event") == "agent_exited":
                self.close()
                if attempt == 1:
                    continue  # died while idle: the turn never began; a new agent takes it
                raise AgentCrashed(f"{turn.role} turn failed: {answer.get('message')}")
            return self._reply(turn, answer)
        raise AssertionError("unreachable")  # pragma: no cover

    def _reply(self, turn: Turn, answer: dict[str, Any]) -> TurnReply:
        if not answer.get("ok"):
            if not answer.get("agent_alive"):
                self.close()  # the service exits after saying so: reaped, RAM back
            error = str(answer.get("error", "error"))
            failed = AgentCrashed if error == "agent_died" else TurnFailed
            raise failed(f"{turn.role} turn failed ({error.replace('_', ' ')}): "
                         f"{answer.get('message')}")  # fmt: skip
        result = answer.get("result")
        outcome = answer.get("outcome")
        self.outcomes[str(outcome)] = self.outcomes.get(str(outcome), 0) + 1
        if outcome == "timed_out":
            raise TurnFailed(f"{turn.role} turn timed out after {self.settings.timeout_s} s")
        if isinstance(result, dict) and result.get("stopped"):  # SIGTERM/SIGINT to the group
            self.close()
            raise TurnFailed(f"{turn.role} turn cancelled: the agent service was stopped")
        record = result.get("record") if isinstance(result, dict) else None
        message = record.get("message") if isinstance(record, dict) else None
        if not isinstance(message, str) or not isinstance(result, dict):
            raise TurnFailed(f"{turn.role} turn result has no message")
        refusals = tuple(str(r) for r in result.get("refusals") or ())
        return TurnReply(text=message, outcome=str(outcome), refusals=refusals)


def from_config(
    config: RunnerConfig, ledger: TicketLedger | None, *, model: AgentModel | None = None
) -> KeptAgentTurns:
    """KeptAgentTurns from a loop's [loop] config, the governor's ledger and the agent's
    model endpoint (the gateway's, with the loop's token; given only when the loop has
    [loop.model]): the AgentTurns factory the loop and the runner use by default (the
    loop service's `--agent-turns MODULE:FACTORY` names another, called the same way).
    The agent is [loop] agent's profile (its command, its RAM). Whoever runs the loop
    closes it at the end."""
    return KeptAgentTurns(config.agent_command, timeout_s=config.turn_timeout_s,
                          sandbox_mode=config.sandbox, ledger=ledger, model=model,
                          sandbox_agent=config.sandbox_agent, profile=config.agent,
                          profiles_file=config.profiles_file,
                          agent_ram_mb=config.agent_ram_mb)  # fmt: skip
