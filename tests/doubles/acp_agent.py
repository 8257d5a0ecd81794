"""TEST DOUBLE of an ACP agent: a scripted stdio JSON-RPC peer for protocol edge cases.

Real-agent behaviour is tested with opencode; this double exists for what opencode never
does: call fs/read_text_file, fs/write_text_file and terminal/* through the client, send
garbage lines, over-long lines, JSON that orjson refuses and malformed notifications,
touch a file itself (so a test knows how far the turn got),
answer with malformed results, die on cue (optionally leaving a child that holds its
pipes, or before reading an answer), flood the client with updates, hold terminals open,
ask for many permissions at once, or run a turn that lasts until the client sends
session/cancel. The prompt's text is a JSON list of operations; the result of each client
call (result or error object) is sent back as an agent_message_chunk whose text is that
JSON, then the turn ends with end_turn.

Run as: python -m tests.doubles.acp_agent
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from typing import Any

_ids = itertools.count(1000)
_sessions = itertools.count(1)  # session ids: scripted-1, scripted-2, ...
_terminal_ids: list[str] = []  # terminals created by "create_terminal", in order
# $FACTORY_DOUBLE_MODES: the `modes` of every session/new reply (JSON), e.g.
# {"currentModeId": "auto", "availableModes": [{"id": "auto", "name": "Auto"}, ...]}
_MODES = json.loads(os.environ.get("FACTORY_DOUBLE_MODES") or "null")
_modes_set: dict[str, str] = {}  # session id -> the mode session/set_mode chose


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def read() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)
    return json.loads(line)


def call_client(method: str, params: dict[str, Any]) -> dict[str, Any]:
    request_id = next(_ids)
    send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    while True:
        message = read()
        if message.get("id") == request_id and "method" not in message:
            return {k: message[k] for k in ("result", "error") if k in message}


def say(session_id: str, text: str) -> None:
    update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    send({"jsonrpc": "2.0", "method": "session/update",
          "params": {"sessionId": session_id, "update": update}})  # fmt: skip


def run_op(session_id: str, op: dict[str, Any]) -> dict[str, Any] | None:
    kind = op["op"]
    if kind == "write":  # "session": name another session than the turn's
        params = {"sessionId": op.get("session", session_id), "path": op["path"],
                  "content": op["content"]}  # fmt: skip
        return call_client("fs/write_text_file", params)
    if kind == "read":
        return call_client("fs/read_text_file", {"sessionId": session_id, "path": op["path"]})
    if kind == "big_write":  # a request line of more than `size` bytes
        params = {"sessionId": session_id, "path": op["path"], "content": "x" * op["size"]}
        return call_client("fs/write_text_file", params)
    if kind == "surrogate_write":  # json escapes it as "\ud800", which orjson refuses
        params = {"sessionId": session_id, "path": op["path"], "content": "\ud800"}
        return call_client("fs/write_text_file", params)
    if kind == "terminal":
        created = call_client("terminal/create", {
            "sessionId": session_id, "command": op["command"], "args": op.get("args", []),
            "outputByteLimit": op.get("outputByteLimit"),
        })  # fmt: skip
        if "error" in created:
            return created
        ref = {"sessionId": session_id, "terminalId": created["result"]["terminalId"]}
        exited = call_client("terminal/wait_for_exit", ref)
        output = call_client("terminal/output", ref)
        call_client("terminal/release", ref)
        return {"exit": exited.get("result"), "output": output.get("result")}
    if kind == "create_terminal":  # kept open: "wait_terminal" / "release_terminal" by index
        created = call_client("terminal/create", {
            "sessionId": session_id, "command": op["command"], "args": op.get("args", []),
        })  # fmt: skip
        if "result" in created:
            _terminal_ids.append(created["result"]["terminalId"])
        return created
    if kind in ("wait_terminal", "kill_terminal", "release_terminal"):
        method = {"wait_terminal": "terminal/wait_for_exit", "kill_terminal": "terminal/kill",
                  "release_terminal": "terminal/release"}[kind]  # fmt: skip
        ref = {"sessionId": session_id, "terminalId": _terminal_ids[op["index"]]}
        return call_client(method, ref)
    if kind == "flood":  # `count` message chunks of `size` characters, no answer expected
        for _ in range(op["count"]):
            say(session_id, "x" * op.get("size", 1))
        return None
    if kind == "die":
        if op.get("leave_child"):  # it inherits stdout/stderr and outlives us
            # "escaped": in a session of its own, out of reach of a kill of our group
            # (already when Popen returns: the child calls setsid() before its exec)
            escaped = op["leave_child"] == "escaped"
            child = subprocess.Popen(
                ["sleep", "60"], stdin=subprocess.DEVNULL, start_new_session=escaped
            )
            sys.stderr.write(f"scripted agent: left child {child.pid}\n")
        sys.stderr.write("scripted agent: dying on cue\n")
        sys.stderr.flush()
        os._exit(3)
    if kind == "ask_then_die":  # stdin closed first: our answer meets a broken pipe
        os.close(0)
        send({"jsonrpc": "2.0", "id": next(_ids), "method": "fs/read_text_file",
              "params": {"sessionId": session_id, "path": op["path"]}})  # fmt: skip
        os._exit(3)
    if kind == "ask_many":  # `count` permission requests sent at once, answers in order
        ids = [next(_ids) for _ in range(op["count"])]
        for n, request_id in enumerate(ids):
            tool_call = {"toolCallId": f"call-{n}", "kind": "edit", "title": f"edit {n}",
                         "locations": [{"path": op["path"]}]}  # fmt: skip
            options = [{"optionId": "allow", "name": "Allow", "kind": "allow_once"},
                       {"optionId": "reject", "name": "Reject", "kind": "reject_once"}]  # fmt: skip
            send({"jsonrpc": "2.0", "id": request_id, "method": "session/request_permission",
                  "params": {"sessionId": session_id, "toolCall": tool_call,
                             "options": options}})  # fmt: skip
        answers: dict[int, Any] = {}
        while len(answers) < len(ids):
            message = read()
            if message.get("id") in ids and "method" not in message:
                answers[message["id"]] = message.get("result", message.get("error"))
        return {"answers": [answers[i] for i in ids]}
    if kind == "announce_then_ask":  # kind and path in session/update only, as
        # @zed-industries/claude-code-acp does: the permission request names the call alone
        call_id = f"announced-{next(_ids)}"
        update = {
            "sessionUpdate": "tool_call",
            "toolCallId": call_id,
            "title": "Write",
            "kind": op["kind"],
            "status": "pending",
            "locations": [{"path": op["path"]}],
            "rawInput": {"file_path": op["path"]},
        }
        send({"jsonrpc": "2.0", "method": "session/update",
              "params": {"sessionId": session_id, "update": update}})  # fmt: skip
        options = [{"optionId": "allow", "name": "Allow", "kind": "allow_once"},
                   {"optionId": "reject", "name": "Reject", "kind": "reject_once"}]  # fmt: skip
        return call_client("session/request_permission", {
            "sessionId": session_id, "toolCall": {"toolCallId": call_id}, "options": options,
        })  # fmt: skip
    if kind == "mode_update":  # the agent switches the session's mode itself
        update = {"sessionUpdate": "current_mode_update", "currentModeId": op["mode"]}
        send({"jsonrpc": "2.0", "method": "session/update",
              "params": {"sessionId": session_id, "update": update}})  # fmt: skip
        return None
    if kind == "mode":  # the mode the session is in (set by session/set_mode)
        return {"mode": _modes_set.get(session_id)}
    if kind == "pid":
        return {"pid": os.getpid()}
    if kind == "touch":  # a file the agent itself writes (no client call): "I got here"
        with open(op["path"], "w") as f:
            f.write("here\n")
        return None
    if kind == "bad_notifications":  # `count` notifications the client cannot dispatch
        for n in range(op["count"]):
            if n % 2:
                send({"jsonrpc": "2.0", "method": "session/no_such_thing", "params": {}})
            else:
                update = {"sessionUpdate": "no_such_update", "n": n}
                send({"jsonrpc": "2.0", "method": "session/update",
                      "params": {"sessionId": session_id, "update": update}})  # fmt: skip
        return None
    if kind == "garbage":
        sys.stdout.write('this line is not json\n[1, 2]\n{"hello": 1}\n')
        sys.stdout.flush()
        return None
    raise ValueError(f"unknown op {kind!r}")


def main() -> None:
    while True:
        message = read()
        method, params = message.get("method"), message.get("params") or {}
        if "id" not in message:
            continue  # notifications (session/cancel) need no answer here
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        if method == "initialize":
            reply["result"] = {"protocolVersion": 1, "agentCapabilities": {}, "authMethods": []}
        elif method == "session/new":
            reply["result"] = {"sessionId": f"scripted-{next(_sessions)}",
                               **({"modes": _MODES} if _MODES is not None else {})}  # fmt: skip
        elif method == "session/set_mode":
            _modes_set[params["sessionId"]] = params["modeId"]
            reply["result"] = {}
        elif method == "session/prompt":
            session_id = params["sessionId"]
            ops = json.loads(params["prompt"][0]["text"])
            stop: Any = "end_turn"
            pad = ""
            for op in ops:
                if op["op"] == "bad_result":
                    stop = 42
                    continue
                if op["op"] == "huge_reply":  # the prompt's reply: a line of `size` bytes
                    pad = "x" * op["size"]
                    continue
                if op["op"] == "ignore_cancel":  # a turn that never ends (until stdin EOF)
                    while True:
                        read()
                if op["op"] == "wait_cancel":  # a long turn: ends when the client cancels
                    while read().get("method") != "session/cancel":
                        pass
                    stop = "cancelled"
                    break
                outcome = run_op(session_id, op)
                if outcome is not None:
                    say(session_id, json.dumps(outcome))
            reply["result"] = {"stopReason": stop, **({"_meta": {"pad": pad}} if pad else {})}
        else:
            reply["error"] = {"code": -32601, "message": f"Method not found: {method}"}
        send(reply)


if __name__ == "__main__":
    main()
