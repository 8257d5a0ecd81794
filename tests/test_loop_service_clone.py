"""The loop process without factoryd's services (no governor, no workspace manager): it
says loops are unlimited, clones golden under the state dir, and run again after a
SIGKILL of its process group it resumes in the same clone and frees it at the end; a
loop whose workspace vanished while it was down fails with that reason."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ipc.loop_records import LoopReader, loops_path
from tests.harness import ROOT
from tests.helpers import loop_holds
from tests.helpers.loop_repos import make_project
from tests.helpers.repos import git
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PY = sys.executable
HOLDS_SCRIPT = ROOT / "tests" / "helpers" / "loop_holds.py"


def setup(tmp: Path, bead: str) -> tuple[list[str], dict[str, str], Path]:
    holds = tmp / "holds"
    holds.mkdir()
    (tmp / "issues.jsonl").write_text(json.dumps(
        {"id": bead, "title": "calc.mul", "status": "open", "description": "calc gains mul"}
    ) + "\n")  # fmt: skip
    (tmp / "loop.toml").write_text(
        f'[loop]\ntest_command = ["{PY}", "{HOLDS_SCRIPT}", "{holds}", "--", "{PY}", "-m", '
        '"pytest", "-q"]\nagent_command = ["in-process"]\nsandbox = "none"\n'
        'refactor_interval = 1\nreviewer = "agent"\n'
    )
    golden = make_project(tmp / "golden")
    argv = [PY, "-m", "procs.loop.service", "--bead", bead, "--beads", str(tmp / "issues.jsonl"),
            "--repo", str(golden), "--config", str(tmp / "loop.toml"), "--workspaces", "clone",
            "--runtime-dir", str(tmp / "run"), "--state-dir", str(tmp / "state"),
            "--agent-turns", "tests.helpers.loop_holds:held_turns"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), loop_holds.ENV: str(holds)}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("FACTORY_RUNTIME_DIR", None)
    return argv, env, holds


def records(stderr: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def killed_at_implementer(argv: list[str], env: dict[str, str], holds: Path) -> None:
    loop_holds.arm(holds, "implementer")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: loop_holds.is_held(holds, "implementer"), timeout=60,
                   what="the loop to reach the implementer's turn")  # fmt: skip
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_clone_is_resumed_after_sigkill_and_freed_at_the_end(tmp_path: Path) -> None:
    argv, env, holds = setup(tmp_path, "bd-1")
    killed_at_implementer(argv, env, holds)
    with LoopReader(loops_path(tmp_path / "state")) as reader:
        before = reader.loop("bd-1.1")
    assert before["phase"] == "implementing"
    assert before["workspace"] == str(tmp_path / "state" / "loop-workspaces" / "bd-1.1")
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ready = next(r for r in records(done.stderr) if r["event"] == "ready")
    assert ready["loop_slots"] == "unlimited (no governor)"
    assert (ready["phase"], ready["workspace"]) == ("implementing", before["workspace"])
    with LoopReader(loops_path(tmp_path / "state")) as reader:
        after = reader.loop("bd-1.1")
    events = [h["event"] for h in after["history"]]
    assert (after["phase"], events[-1]) == ("complete", "Pushed")
    assert events[:3] == ["AuditorWroteTest", "RedConfirmed", "CodeWritten"]
    assert events.count("CodeWritten") == 1  # the killed turn was redone, recorded once
    assert "def mul" in git(tmp_path / "golden", "show", "main:calc.py")
    assert os.listdir(tmp_path / "state" / "loop-workspaces") == []  # freed, no partial clone


def test_a_loop_whose_workspace_vanished_fails_with_that_reason(tmp_path: Path) -> None:
    argv, env, holds = setup(tmp_path, "bd-2")
    killed_at_implementer(argv, env, holds)
    shutil.rmtree(tmp_path / "state" / "loop-workspaces" / "bd-2.1")
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with LoopReader(loops_path(tmp_path / "state")) as reader:
        loop = reader.loop("bd-2")
    assert loop["phase"] == "failed"
    assert "workspace" in loop["reason"] and "is gone" in loop["reason"]
    assert loop["history"][-1]["event"] == "Aborted"
