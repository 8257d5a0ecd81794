"""TEST DOUBLE of an ACP coding agent that plays the four TDD roles from a script.

It reads the loop's rendered prompt, tells the role from its heading ("# Auditor turn",
"# Implementer turn", "# Architect turn", "# Final review"), and writes files through the
client's fs/write_text_file (so the role's policy binds it), then ends its turn with one
FACTORY_RESULT line. The script is a JSON file named by $FACTORY_TDD_SCRIPT:

    {"module": "calc.py", "base": "<the module's text before the bead>",
     "steps": [{"test_path": "tests/test_mul.py", "test": "...", "code": "..."}, ...]}

Auditor: writes the first step's test that is not in the workspace yet, else answers
REQUIREMENTS_COMPLETE. Implementer: writes `module` as base + the code of every step whose
test exists. Architect: changes nothing. Reviewer: approves.

With $OPENAI_BASE_URL set (the agent service's generic profile: the loop handed it a
model), each prompt first makes one chat completion there with $OPENAI_API_KEY, so the
model gateway counts the turn; a refusal (429 over budget) is ignored, as the loop, not
the agent, judges the budget.

Run as: python -m tests.doubles.tdd_agent   (cwd: the workspace)
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

_ids = itertools.count(1)


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def read() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)
    return json.loads(line)


def call_client(method: str, params: dict[str, Any]) -> dict[str, Any]:
    request_id = f"tdd-{next(_ids)}"
    send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    while True:
        message = read()
        if message.get("id") == request_id and "method" not in message:
            return message


def write(session_id: str, relpath: str, content: str) -> None:
    path = str(Path.cwd() / relpath)
    call_client("fs/write_text_file", {"sessionId": session_id, "path": path, "content": content})


def turn(session_id: str, prompt: str) -> str:
    script = json.loads(Path(os.environ["FACTORY_TDD_SCRIPT"]).read_text())
    steps = script["steps"]
    if "# Auditor turn" in prompt:
        for step in steps:
            if not (Path.cwd() / step["test_path"]).exists():
                write(session_id, step["test_path"], step["test"])
                return json.dumps({"status": "test_written", "test": step["test_path"],
                                   "reasoning": f"drives {step['test_path']}"})  # fmt: skip
        return json.dumps({"status": "requirements_complete", "reasoning": "all covered"})
    if "# Implementer turn" in prompt:
        code = [script["base"]] + [step["code"] for step in steps
                                   if (Path.cwd() / step["test_path"]).exists()]  # fmt: skip
        write(session_id, script["module"], "\n\n".join(code))
        return json.dumps({"status": "implemented", "summary": "wrote the module"})
    if "# Architect turn" in prompt:
        return json.dumps({"status": "no_change", "lines_after": 0, "summary": "fine as is"})
    return json.dumps({"status": "approve", "issues": []})


def ask_model(prompt: str) -> None:
    """One chat completion at $OPENAI_BASE_URL (when set); errors are ignored."""
    url = os.environ.get("OPENAI_BASE_URL")
    if not url:
        return
    body = {"model": os.environ.get("FACTORY_MODEL_NAME", "default"), "stream": False,
            "messages": [{"role": "user", "content": prompt[:500]}]}  # fmt: skip
    request = urllib.request.Request(
        f"{url.rstrip('/')}/chat/completions", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}",
                 "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
    except (urllib.error.URLError, OSError):
        pass  # over budget (429) or down: the loop reads the gateway's counts


def main() -> None:
    while True:
        message = read()
        method, params = message.get("method"), message.get("params") or {}
        if "id" not in message:
            continue
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        if method == "initialize":
            reply["result"] = {"protocolVersion": 1, "agentCapabilities": {}, "authMethods": []}
        elif method == "session/new":
            reply["result"] = {"sessionId": "tdd-1"}
        elif method == "session/prompt":
            session_id = params["sessionId"]
            prompt = "".join(part.get("text", "") for part in params["prompt"])
            ask_model(prompt)
            text = f"Done.\nFACTORY_RESULT {turn(session_id, prompt)}"
            update = {"sessionUpdate": "agent_message_chunk",
                      "content": {"type": "text", "text": text}}  # fmt: skip
            send({"jsonrpc": "2.0", "method": "session/update",
                  "params": {"sessionId": session_id, "update": update}})  # fmt: skip
            reply["result"] = {"stopReason": "end_turn"}
        else:
            reply["error"] = {"code": -32601, "message": f"Method not found: {method}"}
        send(reply)


if __name__ == "__main__":
    main()
