"""Bounds on what an agent can make us hold: the turn record (updates, decisions) and the
session's terminals. Driven through the real wire by the scripted ACP TEST DOUBLE, and
with real subprocesses for terminals."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from procs.agent import AcpAgent, RolePolicy
from procs.agent.record import RecordLimits, TurnRecord
from procs.agent.result import TurnResult
from procs.agent.terminals import TerminalLimit, Terminals
from tests.helpers.sandbox import sandbox_mode
from tests.waiting import pid_gone, wait_until

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def run_turn(
    ws: Path, ops: list[dict[str, Any]], role: str = "implementer", **limits: Any
) -> TurnResult:
    async def main() -> TurnResult:
        policy = RolePolicy.for_role(role, may_execute=role == "architect")
        agent = await AcpAgent.start(
            AGENT, workspace=ws, policy=policy, env=ENV, timeout=30, sandbox_mode=sandbox_mode(),
            **limits,
        )  # fmt: skip
        try:
            await agent.new_session(timeout=10)
            return await agent.prompt(json.dumps(ops), timeout=30)
        finally:
            await agent.close()

    return asyncio.run(main())


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("a = 1\n")
    return workspace


# the turn record -------------------------------------------------------------------------


@pytest.mark.integration  # the agent double or commands as processes
def test_a_flood_of_updates_keeps_the_first_and_counts_the_rest(ws: Path) -> None:
    ops = [
        {"op": "write", "path": str(ws / "src" / "new.py"), "content": "n = 1\n"},
        {"op": "flood", "count": 3000},
    ]
    result = run_turn(ws, ops, record_limits=RecordLimits(max_updates=50))
    assert result.stop_reason == "end_turn"
    record = result.record
    assert len(record.updates) == len(record.message_chunks) == 50
    assert result.dropped_updates == 1 + 3000 - 50  # the write's reply, then the flood
    assert json.loads(record.message_chunks[0]) == {"result": {}}  # the first are kept
    assert record.message_chunks[1:] == ["x"] * 49
    assert [(f.op, f.ok) for f in record.files] == [("write", True)]  # its own budget
    assert result.dropped_decisions == 0
    data = result.to_dict()
    assert (data["dropped_updates"], data["record"]["dropped_updates"]) == (2951, 2951)
    assert data["record"]["limits"]["max_updates"] == 50


@pytest.mark.integration  # the agent double or commands as processes
def test_the_byte_budget_bounds_the_record(ws: Path) -> None:
    budget = 20_000
    result = run_turn(
        ws, [{"op": "flood", "count": 400, "size": 300}],
        record_limits=RecordLimits(max_update_bytes=budget),
    )  # fmt: skip
    record = result.record
    size = len(orjson.dumps(record.updates[0]))  # every flood update has the same size
    assert size > 300
    kept = budget // size
    assert len(record.updates) == kept
    assert record.update_bytes == kept * size <= budget < record.update_bytes + size
    assert result.dropped_updates == 400 - kept


@pytest.mark.integration  # the agent double or commands as processes
def test_decisions_past_their_budget_are_served_but_not_kept(ws: Path) -> None:
    ops = [{"op": "read", "path": str(ws / "src" / "app.py")}] * 10
    result = run_turn(ws, ops, record_limits=RecordLimits(max_decisions=3))
    assert [json.loads(c) for c in result.record.message_chunks] == [
        {"result": {"content": "a = 1\n"}}
    ] * 10
    assert [(f.op, f.ok) for f in result.record.files] == [("read", True)] * 3
    assert result.dropped_decisions == 7


def test_the_record_is_a_prefix_a_small_update_after_a_drop_is_dropped_too() -> None:
    record = TurnRecord(RecordLimits(max_update_bytes=300))
    small = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "a"}}
    big = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "b" * 400}}
    assert record.add_update(small) is True
    assert record.add_update(big) is False
    assert record.add_update(small) is False
    assert (record.message, record.dropped_updates) == ("a", 2)


@pytest.mark.parametrize("field", ["max_updates", "max_update_bytes", "max_decisions"])
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_bad_record_limits_name_the_field(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"RecordLimits\.{field} must be an integer >= 1"):
        RecordLimits(**{field: bad})  # type: ignore[arg-type]


# terminals -------------------------------------------------------------------------------


@pytest.mark.integration  # the agent double or commands as processes
def test_terminal_cap_refuses_and_exit_or_release_frees_a_place(tmp_path: Path) -> None:
    async def main() -> list[int]:
        terminals = Terminals(
            tmp_path, max_terminals=2, max_kept_terminals=3, sandbox_mode=sandbox_mode()
        )
        a = await terminals.create("sleep", ["30"])
        b = await terminals.create("sleep", ["30"])
        with pytest.raises(TerminalLimit, match=r"2 commands are already running .*=2") as info:
            await terminals.create("sleep", ["30"])
        assert "(max_terminals=2)" in str(info.value)
        await terminals.release(a)  # a release frees a place
        c = await terminals.create("sleep", ["30"])
        terminals.kill(b)  # so does an exit (b stays kept until released)
        await terminals.wait_for_exit(b, timeout=10)
        d = await terminals.create("sleep", ["30"])
        assert terminals.statistics()["running"] == 2
        terminals.kill(c)
        await terminals.wait_for_exit(c, timeout=10)
        with pytest.raises(TerminalLimit, match=r"3 terminals are not yet released .*=3") as info:
            await terminals.create("sleep", ["30"])
        assert "(max_kept_terminals=3)" in str(info.value)
        await terminals.release(b)
        e = await terminals.create("sleep", ["30"])
        pids = [terminals.get(t).process.pid for t in (c, d, e)]
        await terminals.close()
        return pids

    for pid in asyncio.run(main()):
        wait_until(lambda pid=pid: pid_gone(pid), timeout=10, what=f"command {pid} to be reaped")


@pytest.mark.integration  # the agent double or commands as processes
def test_concurrent_creates_cannot_overshoot_the_cap(tmp_path: Path) -> None:
    async def main() -> list[object]:
        terminals = Terminals(tmp_path, max_terminals=1, sandbox_mode=sandbox_mode())
        try:
            return await asyncio.gather(
                *(terminals.create("sleep", ["30"]) for _ in range(4)), return_exceptions=True
            )
        finally:
            await terminals.close()

    outcomes = asyncio.run(main())
    assert sum(isinstance(o, str) for o in outcomes) == 1
    assert sum(isinstance(o, TerminalLimit) for o in outcomes) == 3


@pytest.mark.parametrize("name", ["max_terminals", "max_kept_terminals"])
def test_bad_terminal_limits_name_the_limit(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= 1, got 0"):
        Terminals(tmp_path, **{name: 0})


@pytest.mark.integration  # the agent double or commands as processes
def test_terminal_refusal_reaches_the_agent_as_an_error_naming_the_limit(ws: Path) -> None:
    sleep = {"op": "create_terminal", "command": "sleep", "args": ["30"]}
    ops = [sleep, sleep, {"op": "release_terminal", "index": 0}, sleep]
    result = run_turn(ws, ops, role="architect", max_terminals=1)
    first, refused, released, again = [json.loads(c) for c in result.record.message_chunks]
    assert "terminalId" in first["result"]
    assert refused["error"]["code"] == -32004
    assert "terminal refused: 1 commands are already running" in refused["error"]["message"]
    assert "max_terminals=1" in refused["error"]["message"]
    assert refused["error"]["data"] == {"max_terminals": 1}
    assert "result" in released
    assert "terminalId" in again["result"]


def test_a_bad_limit_is_refused_before_the_agent_is_spawned(ws: Path) -> None:
    async def main() -> None:
        await AcpAgent.start(
            ["/nonexistent/agent"], workspace=ws, policy=RolePolicy.for_role("reviewer"),
            max_terminals=0,
        )  # fmt: skip

    with pytest.raises(ValueError, match="max_terminals must be an integer >= 1"):
        asyncio.run(main())  # not FileNotFoundError: nothing was spawned
