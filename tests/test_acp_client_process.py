"""procs.agent.service as a real process: one turn to JSON, SIGTERM cancels and reaps the agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import pid_gone, wait_until

pytestmark = pytest.mark.integration  # the client and the agent double as processes

ROOT = Path(__file__).resolve().parent.parent
AGENT = [sys.executable, "-m", "tests.doubles.acp_agent"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the agent double runs in the workspace


def client_cmd(ws: Path, ops: list[dict], *extra: str) -> list[str]:
    """The client, with every ResourceWarning printed (a leaked pipe or transport)."""
    return [
        sys.executable, "-W", "always::ResourceWarning", "-m", "procs.agent.service",
        "--workspace", str(ws), "--role", "implementer", "--prompt", json.dumps(ops), *extra,
        "--", *AGENT,
    ]  # fmt: skip


def test_one_turn_prints_the_result(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    ops = [{"op": "write", "path": str(ws / "src" / "a.py"), "content": "a = 1\n"}]
    done = subprocess.run(
        client_cmd(ws, ops), cwd=ROOT, env=ENV, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert result["stop_reason"] == "end_turn"
    assert result["record"]["files"][0]["ok"] is True
    assert (ws / "src" / "a.py").read_text() == "a = 1\n"
    assert b"ResourceWarning" not in done.stderr


def test_sigterm_cancels_the_turn_and_reaps_the_agent(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    marker = ws / "started.txt"
    # The agent touches the marker itself, then waits for the cancel: our SIGTERM comes
    # after its last client call was answered (a cancel sent while it still waited for
    # the answer to a write was read and dropped there, and the turn never ended).
    ops = [{"op": "pid"}, {"op": "touch", "path": str(marker)}, {"op": "wait_cancel"}]
    proc = subprocess.Popen(
        client_cmd(ws, ops, "--result-file", str(tmp_path / "result.json")),
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0,
    )  # fmt: skip
    try:
        wait_until(marker.exists, timeout=60, what="the turn to start")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()
        assert b"ResourceWarning" not in stderr
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["stop_reason"] == "cancelled"
    agent_pid = json.loads(result["record"]["message_chunks"][0])["pid"]
    assert pid_gone(agent_pid)


def test_dead_agent_exits_3_with_a_json_reason(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    done = subprocess.run(
        client_cmd(ws, [{"op": "die"}]),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    report = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert report["reason"] == "AgentDied"
    assert "exited with status 3" in report["message"]


def test_an_agent_gone_before_our_answer_is_its_death_not_a_traceback(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "a.py").write_text("a = 1\n")
    # It closes its stdin, asks to read a file and exits: our answer meets a broken pipe.
    done = subprocess.run(
        client_cmd(ws, [{"op": "ask_then_die", "path": "src/a.py"}]),
        cwd=ROOT, env=ENV, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr.decode()
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, done.stderr.decode()
    report = json.loads(lines[0])
    assert report["reason"] == "AgentDied"
    assert "exited with status 3" in report["message"]


def test_an_agent_ignoring_the_cancel_exits_3_once_the_grace_is_over(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    marker = ws / "started.txt"
    ops = [{"op": "touch", "path": str(marker)}, {"op": "ignore_cancel"}]
    proc = subprocess.Popen(
        client_cmd(ws, ops, "--cancel-grace-s", "0.5"),
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0,
    )  # fmt: skip
    try:
        wait_until(marker.exists, timeout=60, what="the turn to start")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == 3, stderr.decode()
    report = json.loads(stderr.decode().strip().splitlines()[-1])
    assert report["reason"] == "AgentTimeout"
    assert "did not end the turn within 0.5s of session/cancel" in report["message"]


def test_a_turn_past_its_timeout_gets_the_configured_cancel_grace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    extra = ("--timeout-s", "0.3", "--cancel-grace-s", "0.5")
    done = subprocess.run(
        client_cmd(ws, [{"op": "ignore_cancel"}], *extra),
        cwd=ROOT, env=ENV, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr.decode()
    report = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert report["reason"] == "AgentTimeout"
    assert "did not end the turn within 0.5s of session/cancel" in report["message"]


def test_record_limit_from_the_command_line(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    done = subprocess.run(
        client_cmd(ws, [{"op": "flood", "count": 40}], "--max-turn-updates", "5"),
        cwd=ROOT, env=ENV, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert (result["dropped_updates"], len(result["record"]["updates"])) == (35, 5)


def test_malformed_notifications_are_counted_and_stderr_stays_small(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    ops = [{"op": "bad_notifications", "count": 1000}, {"op": "pid"}]
    done = subprocess.run(
        client_cmd(ws, ops), cwd=ROOT, env=ENV, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert len(done.stderr) < 8000, done.stderr.decode()[-2000:]
    assert b"Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["malformed_notifications"] == 1000
    assert 0 < len(result["protocol_violations"]) <= 100
    assert "no_such_update" in result["protocol_violations"][0]
    assert "no such notification 'session/no_such_thing'" in result["protocol_violations"][1]
    assert len(result["record"]["message_chunks"]) == 1  # the good update after them counts


def test_a_bad_limit_is_bad_usage_naming_the_option(tmp_path: Path) -> None:
    done = subprocess.run(
        client_cmd(tmp_path, [], "--max-terminals", "0"),
        cwd=ROOT, env=ENV, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "argument --max-terminals: must be >= 1, got 0" in done.stderr.decode()
