"""The heartbeat as a real process on a real bus, on a tiny golden repository: green at
start announces nothing; each GoldenMasterUpdated runs the suite at once; green->red is a
TestFailure naming the failing file, its error and the commit; red with another error is
a TestFailure again; a restarted heartbeat that finds the same red announces nothing;
red->green is a TestPassing with the commit."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ipc import control, paths
from ipc.bus import Publisher, Subscriber
from ipc.signals import GitHash, GoldenMasterUpdated
from tests.helpers.loop_repos import make_project, write
from tests.helpers.processes import Processes
from tests.helpers.repos import git
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


class HeartbeatProcess:
    def __init__(self, tmp: Path, procs: Processes, golden: Path, *extra: str) -> None:
        self.tmp = tmp
        self.runtime = tmp / "run"
        self.log = tmp / f"heartbeat-{len(list(tmp.glob('heartbeat-*.log')))}.log"
        argv = [sys.executable, "-m", "procs.heartbeat.service", "--runtime-dir",
                str(self.runtime), "--state-dir", str(tmp / "state"), "--repo", str(golden),
                "--golden", "git", "--test-command",
                f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q",
                "--sandbox", "bwrap", "--interval-s", "300", *extra]  # fmt: skip
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        with open(self.log, "ab") as err:
            self.proc = procs.start(argv, stderr=err, env=env)
        wait_until(lambda: self.events("ready") or self.proc.poll() is not None, timeout=30,
                   what="the heartbeat ready")  # fmt: skip
        assert self.proc.poll() is None, self.log.read_text()

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [e for e in map(orjson.loads, lines) if e.get("event") == name]

    def verdict_on(self, commit: str) -> dict[str, Any] | None:
        return next((e for e in self.events("verdict") if e["hash"] == commit), None)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0


def commit(repo: Path, path: str, text: str, message: str) -> str:
    write(repo, path, text)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def updated(pub: Publisher, hb: HeartbeatProcess, head: str) -> dict[str, Any]:
    """GoldenMasterUpdated(head), sent until the heartbeat has a verdict on it (a slow
    joiner may miss the first; a check of a HEAD already tested runs nothing)."""

    def verdict() -> dict[str, Any] | None:
        pub.publish(GoldenMasterUpdated(GitHash(head)), timeout=5)
        return hb.verdict_on(head)

    return wait_until(verdict, timeout=60, what=f"a verdict on {head[:12]}")


@pytest.mark.timeout(120)
def test_green_red_red_again_and_green_are_announced_once_each(
    tmp_path: Path, procs: Processes
) -> None:
    runtime = tmp_path / "run"
    paths.private_dir(runtime)
    procs.broker(runtime)
    golden = make_project(tmp_path / "golden")
    start = git(golden, "rev-parse", "HEAD").strip()
    sub = Subscriber(runtime, types=["TestFailure", "TestPassing"])
    pub = Publisher(runtime, source="test")
    try:
        sub.wait_connected(timeout=10)
        pub.wait_connected(timeout=10)
        hb = HeartbeatProcess(tmp_path, procs, golden)
        wait_until(lambda: hb.verdict_on(start), timeout=60, what="the first verdict")
        assert hb.verdict_on(start)["green"] is True  # type: ignore[index]

        red = commit(golden, "calc.py", "def add(a, b):\n    return a - b\n", "break add")
        assert updated(pub, hb, red)["green"] is False
        failure = sub.wait_for("TestFailure", timeout=10).signal
        assert (failure.file, failure.context_hash) == ("tests/test_calc.py", red)
        assert "test_add" in failure.error and "assert" in failure.error

        other = commit(golden, "tests/test_more.py",
                       "import calc\n\n\ndef test_more():\n    assert calc.add(1, 1) == 2\n",
                       "another failing test")  # fmt: skip
        updated(pub, hb, other)
        again = sub.wait_for("TestFailure", timeout=10).signal
        assert again.context_hash == other and "2 failed" in again.error

        hb.stop()  # a restart that runs the suite again finds the same red: no signal
        hb = HeartbeatProcess(tmp_path, procs, golden, "--rerun-s", "0.001")
        wait_until(lambda: len(hb.events("verdict")) >= 1, timeout=60, what="a rerun")
        assert hb.events("verdict")[0]["hash"] == other
        assert hb.events("announced") == []

        green = commit(golden, "calc.py", "def add(a, b):\n    return a + b\n", "fix add")
        assert updated(pub, hb, green)["green"] is True
        passing = sub.wait_for("TestPassing", timeout=10).signal
        assert passing.hash == green
        assert sub.recv(timeout=0.2) is None  # nothing else was announced
        status = control.call(paths.control_socket(runtime, "heartbeat"), "status", {},
                              timeout=10)  # fmt: skip
        assert status["announced"]["state"] == "green" and status["published"] == {
            "TestFailure": 0, "TestPassing": 1}  # fmt: skip
        hb.stop()
    finally:
        sub.close()
        pub.close()
    assert git(golden, "status", "--porcelain", "--ignored") == ""  # golden was only read
