"""The chaos soak's agents: a scripted ACP agent process, and the loop's turns over it.

As a script (`python3 bench/chaos_agent.py --turn-s 1.5`, cwd: the workspace) it is a
real ACP agent process on stdio, scripted instead of a model: each bead's text names
one module (`chaos module K: textstats.chaos_K.value() returns K`); the auditor writes
its one test (tests/test_chaos_K.py) through the client's fs/write_text_file, the
implementer the module, the architect changes nothing, the reviewer approves. Every
prompt takes --turn-s seconds first, so a loop spends most of its life in a turn: an
agent to SIGKILL. Standard library only: it runs inside the role's sandbox.

As a module, `bench.chaos_agent:turns` is the loop's --agent-turns factory: the
production KeptAgentTurns (one kept agent service and agent process per role, in the
sandbox) with a RAM reservation fitting this agent (64 MB, not opencode's 800 MB: eight
loops of kept opencode agents would not fit the box's RAM).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

AGENT_RAM_MB = 64
MARKER = re.compile(r"chaos module (\d+)")


def bead_text(k: int) -> str:
    """The description of chaos bead K: what the agent reads back from its prompt."""
    return f"chaos module {k}: textstats.chaos_{k}.value() returns {k}."


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _read() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)
    message = json.loads(line)
    return message if isinstance(message, dict) else {}


class _Client:
    """The ACP client's side of our calls (fs/write_text_file), answered in order."""

    def __init__(self) -> None:
        self.next_id = 0

    def write(self, session_id: str, relpath: str, content: str) -> None:
        self.next_id += 1
        request_id = f"chaos-{self.next_id}"
        _send({"jsonrpc": "2.0", "id": request_id, "method": "fs/write_text_file",
               "params": {"sessionId": session_id, "path": str(Path.cwd() / relpath),
                          "content": content}})  # fmt: skip
        while True:
            message = _read()
            if message.get("id") == request_id and "method" not in message:
                return


def _turn(client: _Client, session_id: str, prompt: str) -> dict[str, Any]:
    if "# Architect turn" in prompt:
        return {"status": "no_change", "lines_after": 0, "summary": "fine as is"}
    if "# Auditor turn" not in prompt and "# Implementer turn" not in prompt:
        return {"status": "approve", "issues": []}  # the reviewer
    found = MARKER.search(prompt)
    if found is None:
        return {"status": "requirements_complete", "reasoning": "no chaos module named"}
    k = int(found.group(1))
    test = f"tests/test_chaos_{k}.py"
    if "# Auditor turn" in prompt:
        if (Path.cwd() / test).exists():
            return {"status": "requirements_complete", "reasoning": f"{test} covers it"}
        client.write(session_id, test, f"def test_value():\n    from textstats.chaos_{k} "
                                       f"import value\n\n    assert value() == {k}\n")  # fmt: skip
        return {"status": "test_written", "test": f"{test}::test_value", "reasoning": "value"}
    client.write(session_id, f"textstats/chaos_{k}.py",
                 f'"""Chaos module {k}."""\n\n\ndef value() -> int:\n    return {k}\n')  # fmt: skip
    return {"status": "implemented", "summary": f"chaos_{k}.value"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the chaos soak's scripted ACP agent")
    parser.add_argument("--turn-s", type=float, default=1.0, help="each prompt's duration")
    args = parser.parse_args(argv)
    client = _Client()
    while True:
        message = _read()
        method, params = message.get("method"), message.get("params") or {}
        if "id" not in message:
            continue  # a notification (session/cancel): the turn in hand ends anyway
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        if method == "initialize":
            reply["result"] = {"protocolVersion": 1, "agentCapabilities": {}, "authMethods": []}
        elif method == "session/new":
            client.next_id += 1
            reply["result"] = {"sessionId": f"chaos-session-{client.next_id}"}
        elif method == "session/prompt":
            session_id = params["sessionId"]
            prompt = "".join(part.get("text", "") for part in params["prompt"])
            time.sleep(args.turn_s)  # the model thinking: a live agent to kill
            result = json.dumps(_turn(client, session_id, prompt))
            update = {
                "sessionUpdate": "agent_message_chunk",
                "content": {"type": "text", "text": f"Done.\nFACTORY_RESULT {result}"},
            }
            _send({"jsonrpc": "2.0", "method": "session/update",
                   "params": {"sessionId": session_id, "update": update}})  # fmt: skip
            reply["result"] = {"stopReason": "end_turn"}
        else:
            reply["error"] = {"code": -32601, "message": f"Method not found: {method}"}
        _send(reply)


def turns(config: Any, held: Any, **kw: Any) -> Any:
    """The loop's AgentTurns: KeptAgentTurns over this agent (see the module's doc)."""
    from procs.loop.kept_agent import KeptAgentTurns  # the loop process's module

    return KeptAgentTurns(config.agent_command, timeout_s=config.turn_timeout_s,
                          sandbox_mode=config.sandbox, ledger=held, model=kw.get("model"),
                          sandbox_agent=config.sandbox_agent,
                          agent_ram_mb=AGENT_RAM_MB)  # fmt: skip


if __name__ == "__main__":
    main()
