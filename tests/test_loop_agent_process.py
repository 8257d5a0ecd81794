"""ProcessTurns: a role turn through the real ACP client process (procs.agent.service)
and a scripted ACP agent (a test double, tests/doubles/acp_agent.py): the role's policy
binds the agent's writes, the reply is the agent's message, and a dead agent or a turn
past its timeout is a TurnFailed naming why."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ipc import ledger
from ipc.ledger import LedgerOwner, Limits, TicketLedger
from procs.loop import FactoryLoopState
from procs.loop.agent_process import ProcessTurns
from procs.loop.turns import Turn, TurnFailed

pytestmark = pytest.mark.integration  # starts the agent service and the agent

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the agent double is importable


def turn(ws: Path, role: str, ops: list[dict[str, object]]) -> Turn:
    state = FactoryLoopState(loop_id="l", bead_id="b", attempt=1, workspace=str(ws),
                             golden_hash="a" * 40)  # fmt: skip
    return Turn(role=role, workspace=ws, system_prompt="(ignored by the double)",
                prompt=json.dumps(ops), state=state)  # fmt: skip


def turns(**kw: float) -> ProcessTurns:
    return ProcessTurns(AGENT, env=ENV, system_prompt_first=False, sandbox_mode="none",
                        **kw)  # fmt: skip


def test_a_turn_writes_through_the_role_policy(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    ops = [
        {"op": "write", "path": str(ws / "calc.py"), "content": "X = 1\n"},
        {"op": "write", "path": str(ws / "tests" / "test_calc.py"), "content": "cheat\n"},
    ]
    reply = turns().implementer(turn(ws, "implementer", ops))
    assert (ws / "calc.py").read_text() == "X = 1\n"
    assert not (ws / "tests").exists()
    assert "may not write tests" in reply.text


def test_an_agent_that_dies_fails_the_turn(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(TurnFailed, match=r"auditor turn failed \(agent service exit 3\)"):
        turns().auditor(turn(ws, "auditor", [{"op": "die"}]))


def test_a_turn_past_its_timeout_fails(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(TurnFailed, match=r"timed out after 2\.0 s"):
        turns(timeout_s=2.0).architect(turn(ws, "architect", [{"op": "wait_cancel"}]))


def test_each_turn_reserves_the_agents_ram_and_gives_it_back(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    owner = LedgerOwner.create(runtime, Limits(ram_budget_mb=1024))
    try:
        client = TicketLedger.open(runtime)
        ws = tmp_path / "ws"
        ws.mkdir()
        ops = [{"op": "write", "path": str(ws / "calc.py"), "content": "X = 1\n"}]
        reserving = ProcessTurns(AGENT, env=ENV, system_prompt_first=False, sandbox_mode="none",
                                 ledger=client, agent_ram_mb=800, ram_wait_s=0.2)  # fmt: skip
        held = owner.acquire({"ram": 512}, label="another loop's agent", timeout=1.0)
        with pytest.raises(TurnFailed, match="could not reserve 800 MB of RAM"):
            reserving.implementer(turn(ws, "implementer", ops))
        assert not (ws / "calc.py").exists(), "the agent started without its RAM"
        owner.release(held)
        reserving.implementer(turn(ws, "implementer", ops))
        assert (ws / "calc.py").exists()
        owner.release(owner.acquire({"ram": 1024}, label="all of it", timeout=1.0))  # back
    finally:
        ledger.destroy(runtime)
