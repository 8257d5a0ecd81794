"""The kept-agent service (`procs.agent.service --serve`) on its wire: one JSON request a
line in, one JSON result a line out, one agent for every turn. A malformed request gets
a clear error line and the service goes on; the agent's death is reported (in the turn,
or at once between turns) and ends the service; EOF and SIGTERM end it cleanly. The
agent is the scripted ACP TEST DOUBLE (tests/doubles/acp_agent.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.integration  # the service and the agent double as processes

AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Served:
    """The service process, with a line-at-a-time conversation (a read blocks until the
    service writes: its own bounds answer every request; the suite's timeout is the
    backstop)."""

    def __init__(self, ws: Path, *extra: str) -> None:
        argv = [sys.executable, "-m", "procs.agent.service", "--serve", "--workspace", str(ws),
                "--sandbox", "none", *extra, "--", *AGENT]  # fmt: skip
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=ENV, text=True,
        )  # fmt: skip
        self.hello = self.read()

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"service ended: {self.process.wait(10)} {self.process.stderr}"
        value: dict[str, Any] = json.loads(line)
        return value

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(json.dumps(request))
        return self.read()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def served(ws: Path) -> Iterator[Served]:
    s = Served(ws)
    yield s
    if s.process.poll() is None:
        s.process.kill()
    s.process.wait(30)
    for pipe in (s.process.stdin, s.process.stdout, s.process.stderr):
        if pipe is not None:
            pipe.close()


def test_ready_then_one_result_line_per_request(served: Served, ws: Path) -> None:
    assert served.hello["event"] == "ready" and served.hello["agent_pid"] > 0
    ops = [{"op": "write", "path": str(ws / "a.py"), "content": "a = 1\n"}]
    answer = served.ask({"id": "t1", "role": "implementer", "prompt": json.dumps(ops)})
    assert (answer["event"], answer["id"], answer["ok"], answer["outcome"]) == (
        "turn", "t1", True, "completed",
    )  # fmt: skip
    assert answer["result"]["record"]["files"][0]["path"] == str(ws / "a.py")
    assert "updates" not in answer["result"]["record"]  # the raw stream stays home
    prompt_file = ws.parent / "prompt.json"
    prompt_file.write_text(json.dumps([{"op": "pid"}]))
    answer = served.ask({"id": 2, "role": "reviewer", "prompt_file": str(prompt_file)})
    assert json.loads(answer["result"]["record"]["message"]) == {"pid": served.hello["agent_pid"]}


@pytest.mark.parametrize(
    ("line", "request_id", "why"),
    [
        ("this is not json", None, "request is not JSON"),
        ("[1, 2]", None, "request is not a JSON object"),
        ('{"id": 5, "role": "wizard", "prompt": "[]"}', 5, "unknown role 'wizard'"),
        ('{"id": 6, "role": "auditor"}', 6, "needs prompt (a string) or prompt_file"),
        ('{"id": 7, "role": "auditor", "prompt_file": "rel.txt"}', 7, "an absolute path"),
        ('{"id": 8, "role": "auditor", "prompt": "[]", "timeout_s": 0}', 8, "timeout_s must"),
        ('{"id": 9, "role": "auditor", "prompt_file": "/nonexistent/p"}', 9, "unreadable"),
    ],
)
def test_a_malformed_request_gets_an_error_line_and_the_service_goes_on(
    served: Served, line: str, request_id: object, why: str
) -> None:
    served.send(line)
    answer = served.read()
    assert (answer["ok"], answer["error"], answer["id"]) == (False, "bad_request", request_id)
    assert why in answer["message"]
    assert served.ask({"id": 10, "role": "auditor", "prompt": "[]"})["ok"] is True


def test_eof_closes_the_agent_and_exits_0(served: Served) -> None:
    assert served.process.stdin is not None
    served.process.stdin.close()
    assert served.process.wait(30) == 0


def test_the_agent_dying_in_a_turn_is_that_turns_error_then_exit_3(served: Served) -> None:
    answer = served.ask({"id": 1, "role": "architect", "prompt": json.dumps([{"op": "die"}])})
    assert (answer["ok"], answer["error"], answer["agent_alive"]) == (False, "agent_died", False)
    assert "dying on cue" in answer["message"]
    assert served.process.wait(30) == 3


def test_the_agent_dying_between_turns_is_reported_at_once(served: Served) -> None:
    os.kill(served.hello["agent_pid"], signal.SIGKILL)
    event = served.read()
    assert event["event"] == "agent_exited"
    assert "exited between turns" in event["message"]
    assert served.process.wait(30) == 3


def test_sigterm_in_a_turn_cancels_it_and_exits_0(served: Served) -> None:
    served.send(json.dumps({"id": 1, "role": "auditor", "prompt": '[{"op": "wait_cancel"}]'}))
    served.process.send_signal(signal.SIGTERM)  # mid-turn, or before it: either way cancelled
    answer = served.read()
    assert (answer["ok"], answer["outcome"]) == (True, "cancelled")
    assert served.process.wait(30) == 0


def test_an_agent_that_cannot_start_is_a_failed_line_and_exit_3(ws: Path) -> None:
    argv = [sys.executable, "-m", "procs.agent.service", "--serve", "--workspace", str(ws),
            "--", "/nonexistent/agent"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=ENV,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert done.returncode == 3
    failed = json.loads(done.stdout)
    assert (failed["event"], failed["error"]) == ("failed", "FileNotFoundError")


def test_serve_takes_role_and_prompt_per_request_only(ws: Path) -> None:
    argv = [sys.executable, "-m", "procs.agent.service", "--serve", "--workspace", str(ws),
            "--role", "auditor", "--", *AGENT]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=ENV,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "--serve takes the role and prompt per request" in done.stderr


def test_an_over_long_request_line_is_refused_and_the_service_goes_on(served: Served) -> None:
    served.send("x" * (9 * 1024 * 1024))  # past MAX_REQUEST_BYTES (8 MiB)
    served.send(json.dumps({"id": 10, "role": "auditor", "prompt": "[]"}))
    answers = [served.read()]
    while answers[-1].get("id") != 10:  # the line's tail may read as one more bad line
        answers.append(served.read())
    assert "request line longer than 8388608 bytes" in answers[0]["message"]
    assert all(a["error"] == "bad_request" for a in answers[:-1]) and len(answers) <= 3
    assert answers[-1]["ok"] is True


def test_a_sandboxed_agent_serves_its_role_only(ws: Path) -> None:
    """--sandbox-role: the agent process runs with that role's locks (here --sandbox none,
    the limits alone: the bwrap case is tests/test_agent_kept_kinds.py), so a turn of
    another role is a bad request; ready says what the sandbox does not isolate."""
    s = Served(ws, "--sandbox-role", "implementer")
    try:
        assert s.hello["sandbox"]["role"] == "implementer"
        assert any("network" in why for why in s.hello["sandbox"]["not_isolated"])
        other = s.ask({"id": 1, "role": "auditor", "prompt": "[]"})
        assert (other["ok"], other["error"]) == (False, "bad_request")
        assert "sandbox of role implementer" in other["message"]
        own = s.ask({"id": 2, "role": "implementer", "prompt": "[]"})
        assert own["ok"] and own["outcome"] == "completed"
    finally:
        s.process.kill()
        s.process.wait(30)
        for pipe in (s.process.stdin, s.process.stdout, s.process.stderr):
            if pipe is not None:
                pipe.close()
