"""factoryctl ends quietly when its reader goes away (`factoryctl status | head -1`):
exit 141 (128 + SIGPIPE), no traceback, nothing on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ipc import paths
from supervisor.ctl.exit_status import ExitStatus
from tests.harness import ROOT
from tests.helpers.control_server import serving

pytestmark = pytest.mark.integration  # real processes and sockets

CTL = [sys.executable, "-m", "supervisor.ctl.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def big_status(command: str, args: dict[str, Any]) -> dict[str, Any]:
    """A status reply whose rendering is far larger than a pipe's 64 KiB buffer."""
    workers = [
        {"id": f"worker-{i}", "type": "worker", "state": "running", "pid": 1000 + i}
        for i in range(3000)
    ]
    tree = {"id": "root", "type": "supervisor", "strategy": "one_for_one", "state": "running",
            "children": workers}  # fmt: skip
    daemon = {"pid": 1, "uptime_s": 1.0, "config": "factory.toml"}
    return {"daemon": daemon, "tree": tree, "resources": None}


def test_status_piped_to_a_reader_that_takes_one_line_and_closes(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    with serving(paths.control_socket(runtime), big_status):
        proc = subprocess.Popen(
            [*CTL, "--runtime-dir", str(runtime), "status"],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # `head -1` is done: factoryctl is still writing
        err = proc.stderr.read()
        code = proc.wait(timeout=30)
    assert first.startswith(b"factoryd pid 1 ")
    assert err == b""
    assert code == ExitStatus.READER_GONE == 141


def test_a_real_factoryd_status_into_a_pipe_already_closed(factoryd) -> None:
    d = factoryd('[supervisor]\n[[supervisor.children]]\nid = "w"\ncommand = ["sleep", "600"]\n')
    d.start()
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the reader is gone before factoryctl writes a byte
    try:
        done = subprocess.run(
            [*CTL, "--runtime-dir", str(d.runtime_dir), "status"],
            cwd=ROOT,
            env=ENV,
            stdout=write_fd,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_fd)
    assert done.stderr == b""
    assert done.returncode == 141
