"""Lines we cannot decode whole still get their answer when their prefix names an id: an
over-long request or one orjson refuses gets error -32600, an over-long reply to ours fails
our call at once. Through the real wire with the scripted ACP TEST DOUBLE."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from procs.agent import AcpAgent, AgentProtocolError, RolePolicy
from procs.agent.result import TurnResult
from procs.agent.rpc_header import read_header
from procs.agent.transport import MAX_LINE_BYTES

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def run_turn(ws: Path, ops: list[dict[str, Any]]) -> TurnResult:
    async def main() -> TurnResult:
        policy = RolePolicy.for_role("implementer")
        agent = await AcpAgent.start(AGENT, workspace=ws, policy=policy, env=ENV, timeout=30)
        try:
            await agent.new_session(timeout=10)
            return await agent.prompt(json.dumps(ops), timeout=10, cancel_grace_s=2)
        finally:
            await agent.close()

    return asyncio.run(main())


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    return workspace


@pytest.mark.integration  # the agent double as a process
def test_an_over_long_request_is_answered_with_its_id(ws: Path) -> None:
    target = ws / "src" / "big.py"
    ops = [{"op": "big_write", "path": str(target), "size": MAX_LINE_BYTES}]
    result = run_turn(ws, ops)
    assert result.stop_reason == "end_turn"
    (answer,) = [json.loads(chunk) for chunk in result.record.message_chunks]
    assert answer["error"]["code"] == -32600
    assert f"longer than {MAX_LINE_BYTES} bytes" in answer["error"]["data"]["details"]
    assert not target.exists()
    assert result.protocol_violations == [f"agent sent a line longer than {MAX_LINE_BYTES} bytes"]


@pytest.mark.integration  # the agent double as a process
def test_a_request_orjson_refuses_is_answered_with_its_id(ws: Path) -> None:
    target = ws / "src" / "lone.py"
    result = run_turn(ws, [{"op": "surrogate_write", "path": str(target)}])
    assert result.stop_reason == "end_turn"
    (answer,) = [json.loads(chunk) for chunk in result.record.message_chunks]
    assert answer["error"]["code"] == -32600
    assert "not JSON" in answer["error"]["data"]["details"]
    assert not target.exists()


@pytest.mark.integration  # the agent double as a process
def test_an_over_long_reply_fails_our_call_at_once(ws: Path) -> None:
    with pytest.raises(AgentProtocolError, match=r"session/prompt.*longer than"):
        run_turn(ws, [{"op": "huge_reply", "size": MAX_LINE_BYTES}])


# the header of a line read from its prefix -------------------------------------------------


@pytest.mark.parametrize(
    ("line", "request_id", "keys"),
    [
        (b'{"jsonrpc": "2.0", "id": 7, "method": "fs/read', 7, {"method"}),
        (b'{"method": "x", "params": {"id": 9}, "id": "a\\"b"}', 'a"b', {"method"}),
        (b'{"method": "x", "params": {"id": 9, "more": "', None, {"method"}),  # nested id only
        (b'{"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "', 3, {"result"}),
        (b'{"id": 12', None, set()),  # the number may go on past the prefix
        (b'{"id": "\\ud800", "method": "x"}', None, {"method"}),  # no reply could carry it
        (b'{"id": true, "method": "x"}', None, {"method"}),
        (b"[1, 2]", None, set()),
        (b"not json", None, set()),
    ],
)
def test_the_header_is_read_at_the_top_level_only(
    line: bytes, request_id: object, keys: set[str]
) -> None:
    header = read_header(line)
    assert (header.request_id, set(header.keys)) == (request_id, keys)
