"""KeptAgentTurns: one agent process per loop, a new session per role turn, the role's
policy per session. Driven through the real service (procs.agent.service --serve) and a
scripted ACP agent (a TEST DOUBLE, tests/doubles/acp_agent.py, whose "pid" op says which
agent process ran the turn): turns of different roles share one agent and are judged by
their own roles; an agent that dies between turns is started anew for the next turn,
one that dies in a turn fails it; the agent's RAM is reserved while it lives and given
back when it exits."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipc.ledger import LedgerOwner, Limits, ResourceError, TicketLedger
from procs.loop import FactoryLoopState, kept_agent
from procs.loop.config import RunnerConfig
from procs.loop.kept_agent import KeptAgentTurns
from procs.loop.turns import AgentCrashed, Turn, TurnFailed, TurnReply
from tests.waiting import pid_gone, wait_until

pytestmark = pytest.mark.integration  # starts the agent service and the agent

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the agent double is importable


def turn(ws: Path, role: str, ops: list[dict[str, Any]]) -> Turn:
    state = FactoryLoopState(loop_id="l", bead_id="b", attempt=1, workspace=str(ws),
                             golden_hash="a" * 40)  # fmt: skip
    return Turn(role=role, workspace=ws, system_prompt="(ignored by the double)",
                prompt=json.dumps(ops), state=state)  # fmt: skip


def replies(reply: TurnReply) -> list[dict[str, Any]]:
    """The double's answer to each op: one JSON object per op, concatenated."""
    decoder, text, found = json.JSONDecoder(), reply.text, []
    while text:
        value, end = decoder.raw_decode(text)
        found.append(value)
        text = text[end:]
    return found


def write(ws: Path, relative: str) -> dict[str, Any]:
    return {"op": "write", "path": str(ws / relative), "content": f"# {relative}\n"}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def kept() -> Iterator[KeptAgentTurns]:
    turns = KeptAgentTurns(AGENT, env=ENV, system_prompt_first=False, sandbox_mode="none",
                           timeout_s=30.0)  # fmt: skip
    with turns:
        yield turns


def test_turns_of_two_roles_share_one_agent_each_under_its_policy(
    ws: Path, kept: KeptAgentTurns
) -> None:
    ops = [{"op": "pid"}, write(ws, "calc.py"), write(ws, "tests/test_calc.py")]
    implementer = kept.implementer(turn(ws, "implementer", ops))
    ops = [{"op": "pid"}, write(ws, "tests/test_calc.py"), write(ws, "calc2.py")]
    auditor = kept.auditor(turn(ws, "auditor", ops))

    [first, code, test] = replies(implementer)
    [second, audited, audit_code] = replies(auditor)
    assert first["pid"] == second["pid"], "both turns ran on one agent process"
    assert kept.statistics()["agent_starts"] == 1
    assert code == {"result": {}} and "may not write tests" in test["error"]["message"]
    assert audited == {"result": {}}
    assert "may not write non-test code" in audit_code["error"]["message"]
    assert (ws / "calc.py").exists() and not (ws / "calc2.py").exists()
    assert (ws / "tests" / "test_calc.py").read_text() == "# tests/test_calc.py\n"
    assert implementer.outcome == auditor.outcome == "refused"  # feedback, not a failure
    assert implementer.refusals == ("role implementer may not write tests (tests/test_calc.py)",)
    assert kept.implementer(turn(ws, "implementer", [])).outcome == "completed"


def test_an_agent_that_died_between_turns_is_started_again(ws: Path, kept: KeptAgentTurns) -> None:
    [before] = replies(kept.architect(turn(ws, "architect", [{"op": "pid"}])))
    service = kept.service
    assert service is not None
    os.kill(before["pid"], signal.SIGKILL)
    service.process.wait(30)  # it says agent_exited and exits; nothing reads that yet
    [after] = replies(kept.architect(turn(ws, "architect", [{"op": "pid"}])))
    assert after["pid"] != before["pid"]
    assert kept.statistics()["agent_starts"] == 2


def test_an_agent_that_dies_in_a_turn_fails_it_and_the_next_turn_restarts_it(
    ws: Path, kept: KeptAgentTurns
) -> None:
    with pytest.raises(AgentCrashed, match=r"auditor turn failed \(agent died\): .*dying on cue"):
        kept.auditor(turn(ws, "auditor", [{"op": "die"}]))  # a crash: the loop redoes it
    assert kept.service is None  # reaped at once
    reply = kept.auditor(turn(ws, "auditor", [write(ws, "tests/test_a.py")]))
    assert reply.outcome == "completed"
    assert kept.statistics()["agent_starts"] == 2


def test_an_agent_that_dies_as_it_starts_is_a_crash_the_loop_redoes(ws: Path) -> None:
    """Killed (or crashed) during initialize: AgentCrashed, so the loop runs the turn
    again with a new agent instead of failing the bead's attempt (bench/chaos.py)."""
    dying = [sys.executable, "-c", "import sys; sys.exit(3)"]
    kept = KeptAgentTurns(dying, env=ENV, system_prompt_first=False, sandbox_mode="none",
                          timeout_s=30.0)  # fmt: skip
    with kept, pytest.raises(AgentCrashed, match="agent did not start: AgentDied"):
        kept.auditor(turn(ws, "auditor", []))


def test_a_turn_past_its_timeout_fails_and_the_agent_is_kept(ws: Path) -> None:
    with KeptAgentTurns(AGENT, env=ENV, system_prompt_first=False, sandbox_mode="none",
                        timeout_s=1.0) as kept:  # fmt: skip
        with pytest.raises(TurnFailed, match=r"architect turn timed out after 1\.0 s"):
            kept.architect(turn(ws, "architect", [{"op": "wait_cancel"}]))
        kept.architect(turn(ws, "architect", []))
        assert kept.statistics()["agent_starts"] == 1


def test_close_ends_the_service_and_its_agent(ws: Path, kept: KeptAgentTurns) -> None:
    [seen] = replies(kept.reviewer(turn(ws, "reviewer", [{"op": "pid"}])))
    service = kept.service
    assert service is not None
    assert os.getpgid(service.process.pid) == os.getpgrp()  # in the loop's process group
    kept.close()
    assert service.process.returncode == 0
    wait_until(lambda: pid_gone(seen["pid"]), timeout=10, what="the agent's exit")
    assert kept.statistics()["service_pid"] is None


def test_the_agents_ram_is_held_while_it_lives_and_given_back(ws: Path, runtime: Path) -> None:
    owner = LedgerOwner.create(runtime, Limits(ram_budget_mb=1024))
    client = TicketLedger.open(runtime)

    def room_for(mb: int) -> bool:
        try:
            owner.release(owner.acquire({"ram": mb}, label="probe", timeout=0.05))
        except ResourceError:
            return False
        return True

    kept = KeptAgentTurns(AGENT, env=ENV, system_prompt_first=False, sandbox_mode="none",
                          ledger=client, agent_ram_mb=800, ram_wait_s=0.2)  # fmt: skip
    other = owner.acquire({"ram": 512}, label="another loop's agent", timeout=1.0)
    with pytest.raises(TurnFailed, match="could not reserve 800 MB of RAM") as no_ram:
        kept.implementer(turn(ws, "implementer", [write(ws, "calc.py")]))
    assert not isinstance(no_ram.value, AgentCrashed)  # no agent died: not redone at once
    assert not (ws / "calc.py").exists(), "the agent started without its RAM"
    owner.release(other)
    try:
        [first] = replies(kept.implementer(turn(ws, "implementer", [{"op": "pid"}])))
        assert not room_for(512), "the reservation is held between turns"
        assert kept.statistics()["holds_ram_mb"] == 800
        os.kill(first["pid"], signal.SIGKILL)  # between turns: a restart reserves anew
        assert kept.service is not None
        kept.service.process.wait(30)
        kept.implementer(turn(ws, "implementer", []))
        assert not room_for(512) and room_for(128), "one reservation, not two"
    finally:
        kept.close()
    assert room_for(1024), "given back when the agent exited"


def test_a_turn_cut_short_by_a_stop_signal_fails(ws: Path, kept: KeptAgentTurns) -> None:
    kept.reviewer(turn(ws, "reviewer", []))  # started
    service = kept.service
    assert service is not None
    marker = ws.parent / "in-turn"
    failed: list[BaseException] = []

    def run() -> None:
        ops = [{"op": "touch", "path": str(marker)}, {"op": "wait_cancel"}]
        try:
            kept.reviewer(turn(ws, "reviewer", ops))
        except TurnFailed as exc:
            failed.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(marker.exists, timeout=30, what="the turn to begin")
    service.process.send_signal(signal.SIGTERM)  # as a SIGTERM to the loop's group would
    worker.join(60)
    assert not worker.is_alive()
    assert [str(e) for e in failed] == ["reviewer turn cancelled: the agent service was stopped"]
    assert not isinstance(failed[0], AgentCrashed)  # a stop is not a crash to redo
    assert service.process.returncode == 0 and kept.service is None


def test_a_service_that_stops_answering_fails_the_turn_within_its_bound(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for the service (run as `python`) says ready, then never answers."""
    hung = tmp_path / "hung-service"
    hung.write_text('#!/bin/sh\necho \'{"event": "ready", "agent_pid": null}\'\nexec sleep 600\n')
    hung.chmod(0o755)
    monkeypatch.setattr(kept_agent, "MARGIN_S", 0.0)
    turns = KeptAgentTurns(AGENT, env=ENV, python=str(hung), timeout_s=0.5, start_timeout_s=0.5,
                           cancel_grace_s=0.5)  # fmt: skip
    with turns, pytest.raises(TurnFailed, match=r"implementer turn ran past 2 s"):
        turns.implementer(turn(ws, "implementer", []))
    assert turns.service is None  # stopped: SIGTERM once stdin's EOF went unheeded


def test_the_loop_services_factory_takes_the_configs_agent_and_limits() -> None:
    config = RunnerConfig(test_command=("pytest",), agent_command=("my-agent", "acp"),
                          turn_timeout_s=42.0, sandbox="none")  # fmt: skip
    turns = kept_agent.from_config(config, None)
    settings = turns.settings
    assert (settings.agent_command, settings.timeout_s, settings.sandbox_mode) == (
        ("my-agent", "acp"), 42.0, "none",
    )  # fmt: skip
    assert turns.service is None  # nothing starts before the first turn
