"""The golden master and the merge queue as real processes, and a tiny project for them.

The project's suite is real pytest, started with plugin autoload off so that one run
takes a fraction of a second; every run goes through the sandbox like any other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from ipc import control, paths
from tests.helpers.processes import Processes
from tests.helpers.sandbox import sandbox_mode
from tests.waiting import wait_until

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/local/bin:/usr/bin:/bin"}  # fmt: skip
TEST_COMMAND = (
    f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=GIT_ENV, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "--", *files)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def tiny_project(repo: Path) -> str:
    """A git repository on `main` whose suite passes in well under a second."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    return commit(repo, {
        "core.py": "def add(a, b):\n    return a + b\n",
        "VERSION": "1\n",
        "tests/test_core.py": "from core import add\n\n\n"
                              "def test_add():\n    assert add(2, 3) == 5\n",
        "pytest.ini": "[pytest]\npythonpath = .\ntestpaths = tests\n",
    }, "a tiny project")  # fmt: skip


def suite_passes(repo: Path, rev: str, scratch: Path) -> bool:
    """Check out `rev` of `repo` in `scratch` and run its suite (outside the services)."""
    if not scratch.exists():
        git(repo, "worktree", "add", "-q", "--detach", str(scratch), rev)
    else:
        git(scratch, "checkout", "-q", "-f", "--detach", rev)
    done = subprocess.run(TEST_COMMAND.split(), cwd=scratch, capture_output=True, timeout=60,
                          check=False, env={**GIT_ENV, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    return done.returncode == 0


class ServiceProcess:
    """A service run as `python3 -m procs.<kind>.service`, ready once it logged so."""

    def __init__(
        self, procs: Processes, tmp: Path, kind: str, socket: str, *argv: str, bus: bool = False
    ) -> None:
        env = {**os.environ, "FACTORY_SANDBOX": sandbox_mode()}
        self.runtime, self.state, self.socket = tmp / "run", tmp / "state", socket
        self.log = tmp / f"{kind}-{len(list(tmp.glob(f'{kind}-*.log')))}.log"
        full = [sys.executable, "-m", f"procs.{kind}.service", "--runtime-dir", str(self.runtime),
                "--state-dir", str(self.state), *([] if bus else ["--no-bus"]), *argv]  # fmt: skip
        with open(self.log, "ab") as err:
            self.proc = procs.start(full, stderr=err, env=env)
        wait_until(lambda: self.events("ready") or self.proc.poll() is not None, timeout=60,
                   what=f"{kind} ready")  # fmt: skip

    @property
    def ready(self) -> bool:
        return self.proc.poll() is None and bool(self.events("ready"))

    def events(self, name: str) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [e for e in map(orjson.loads, lines) if e.get("event") == name]

    def call(self, command: str, timeout: float = 30.0, **args: Any) -> Any:
        return control.call(paths.control_socket(self.runtime, self.socket), command, args,
                            timeout=timeout)  # fmt: skip


def start_golden(
    procs: Processes, tmp: Path, repo: Path, *argv: str, bus: bool = False
) -> ServiceProcess:
    return ServiceProcess(procs, tmp, "golden", "golden", "--repo", str(repo),
                          "--test-command", TEST_COMMAND, *argv, bus=bus)  # fmt: skip


def start_queue(procs: Processes, tmp: Path, *argv: str, bus: bool = False) -> ServiceProcess:
    return ServiceProcess(procs, tmp, "merge_queue", "merge_queue", "--test-command",
                          TEST_COMMAND, *argv, bus=bus)  # fmt: skip
