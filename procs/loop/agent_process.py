"""ProcessTurns: AgentTurns through the ACP client, one `procs.agent.service` process per turn.

    python -m procs.agent.service --workspace WS --role ROLE --prompt-file P \
        --result-file R --timeout-s T --sandbox MODE -- AGENT COMMAND...

The agent kind is reached as a process, never imported (process kinds do not import each
other). Each turn starts the agent, opens a new session with the role's policy (the
client refuses writes the role may not make), sends the prompt and closes the agent. ACP
has no system-prompt field, so the role's standing instructions go first in the prompt
text. The turn process runs in the loop's process group (a killpg of the loop takes it
and its agent) and is bounded: the turn's timeout plus the agent's start and a margin.

A turn that cannot be done raises TurnFailed naming why: the agent died, broke the
protocol or ignored a cancel (the service's exit 3 and its JSON reason), the turn timed
out, the service exited otherwise, or its result is unreadable.

Memory: with a ledger (the governor's, ipc.ledger), each turn first reserves the agent's
expected RSS (`agent_ram_mb`; up to ~770 MB for opencode 1.18, measured) as "ram", waiting at most
`ram_wait_s`, and gives it back when the agent has exited; the reservation is held by
this (the loop's) process with SEM_UNDO, so a SIGKILLed loop's RAM comes back too. A
reservation that cannot be had in time is a TurnFailed naming the RAM.

Starting the agent costs seconds per turn (opencode: ~4.4 s plus ~2.1 s for its first
session/new): a loop uses KeptAgentTurns (kept_agent.py), one agent process per loop and
a new session per turn, with the same constructor arguments. This one remains for a
single turn in a process of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from ipc.ledger import ResourceError, TicketLedger
from procs.loop.agent_service import MODEL_TOKEN_ENV, AgentModel
from procs.loop.kept_agent import AGENT_RAM_MB
from procs.loop.turns import Turn, TurnFailed, TurnReply

START_TIMEOUT_S = 90.0
MARGIN_S = 30.0
MAX_STDERR_CHARS = 2000


class ProcessTurns:
    """AgentTurns running `agent_command` (e.g. `opencode acp --pure`) per turn.

    `timeout_s`: one turn's limit (the service cancels the turn then). `sandbox_mode`:
    how the agent's terminal commands run. `env`: the service's and the agent's whole
    environment (default: ours). `system_prompt_first`: put the role's standing
    instructions before the prompt (off only for scripted agents that parse the prompt).
    `ledger`, `agent_ram_mb`, `ram_wait_s`: the RAM reservation around each turn.
    `model`: the agent's model endpoint and key (procs.loop.agent_service.AgentModel).
    """

    def __init__(
        self,
        agent_command: Sequence[str],
        *,
        timeout_s: float = 600.0,
        start_timeout_s: float = START_TIMEOUT_S,
        sandbox_mode: str = "bwrap",
        env: Mapping[str, str] | None = None,
        system_prompt_first: bool = True,
        python: str = sys.executable,
        ledger: TicketLedger | None = None,
        agent_ram_mb: int = AGENT_RAM_MB,
        ram_wait_s: float = 60.0,
        model: AgentModel | None = None,
    ) -> None:
        if not agent_command:
            raise ValueError("agent_command is empty")
        self.agent_command = list(agent_command)
        self.model = model
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.sandbox_mode = sandbox_mode
        self.env = dict(os.environ if env is None else env)
        self.env.pop(MODEL_TOKEN_ENV, None)  # only this model's key, if any
        if model is not None:
            self.env.update(model.env())
        self.system_prompt_first = system_prompt_first
        self.python = python
        self.ledger = ledger
        self.agent_ram_mb = agent_ram_mb
        self.ram_wait_s = ram_wait_s

    def auditor(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def implementer(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def architect(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def reviewer(self, turn: Turn) -> TurnReply:
        return self._run(turn)

    def _run(self, turn: Turn) -> TurnReply:
        if self.ledger is None:
            return self._run_agent(turn)
        label = f"loop {turn.state.loop_id} {turn.role} agent"
        try:
            ticket = self.ledger.acquire({"ram": self.agent_ram_mb}, label=label,
                                         timeout=self.ram_wait_s)  # fmt: skip
        except ResourceError as exc:
            raise TurnFailed(
                f"could not reserve {self.agent_ram_mb} MB of RAM for the {turn.role} agent "
                f"within {self.ram_wait_s} s: {exc}"
            ) from None
        try:
            return self._run_agent(turn)
        finally:
            self.ledger.release(ticket)

    def _run_agent(self, turn: Turn) -> TurnReply:
        text = f"{turn.system_prompt}\n\n{turn.prompt}" if self.system_prompt_first else turn.prompt
        with tempfile.TemporaryDirectory(prefix="factory-turn-") as scratch:
            prompt_file = Path(scratch) / "prompt.md"
            result_file = Path(scratch) / "result.json"
            prompt_file.write_text(text)
            argv = [
                self.python, "-m", "procs.agent.service", "--workspace", str(turn.workspace),
                "--role", turn.role, "--prompt-file", str(prompt_file),
                "--result-file", str(result_file), "--timeout-s", str(self.timeout_s),
                "--start-timeout-s", str(self.start_timeout_s), "--sandbox", self.sandbox_mode,
                *(self.model.argv() if self.model is not None else []), "--", *self.agent_command,
            ]  # fmt: skip
            limit = self.timeout_s + 2 * self.start_timeout_s + MARGIN_S
            try:
                done = subprocess.run(
                    argv, capture_output=True, env=self.env, timeout=limit, check=False,
                    stdin=subprocess.DEVNULL, cwd=turn.workspace,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise TurnFailed(f"{turn.role} turn process ran past {limit:.0f} s") from None
            stderr = done.stderr.decode(errors="replace")[-MAX_STDERR_CHARS:]
            if done.returncode != 0:
                raise TurnFailed(
                    f"{turn.role} turn failed (agent service exit {done.returncode}): "
                    f"{_last_line(stderr)}"
                )
            result = _read_result(result_file, turn.role)
        if result.get("timed_out"):
            raise TurnFailed(f"{turn.role} turn timed out after {self.timeout_s} s")
        record = result.get("record")
        message = record.get("message") if isinstance(record, dict) else None
        if not isinstance(message, str):
            raise TurnFailed(f"{turn.role} turn result has no message")
        return TurnReply(text=message)


def _read_result(path: Path, role: str) -> dict[str, Any]:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise TurnFailed(f"{role} turn result unreadable: {exc}") from None
    if not isinstance(value, dict):
        raise TurnFailed(f"{role} turn result is not a JSON object")
    return value


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message on stderr"
