"""A toolchain under /tmp (a venv made by `python3 -m venv /tmp/v`, a PATH entry) stays
visible, read-only, inside the sandbox's private /tmp: the sandboxed command finds the
same programs its caller does. A fresh-venv run of the suite found this."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.agent.agent_sandbox import sandboxed_command
from procs.agent.roles import RolePolicy
from procs.sandbox import SandboxPolicy, run
from procs.sandbox._bwrap import toolchain_under_tmp
from tests.helpers.sandbox import skip_without_bwrap


@pytest.fixture
def tool_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="toolchain-") as d:
        bin_dir = Path(d) / "bin"
        bin_dir.mkdir()
        tool = bin_dir / "hello-tool"
        tool.write_text("#!/bin/sh\necho hello from $0\n")
        tool.chmod(0o755)
        yield bin_dir


def test_only_outermost_dirs_under_tmp_are_named(tool_dir: Path) -> None:
    inner = tool_dir / "deeper"
    inner.mkdir()
    found = toolchain_under_tmp(f"/usr/bin:{tool_dir}:{inner}:/tmp::relative")
    assert str(tool_dir.resolve()) in found
    assert str(inner.resolve()) not in found  # inside one already bound
    assert "/tmp" not in found and all(p.startswith("/tmp/") for p in found)


def test_an_npm_bin_dir_brings_its_whole_node_modules(tool_dir: Path) -> None:
    """npm's .bin holds links into the packages beside it (a checkout's .ci/node under
    /tmp: real agents failed to start in the sandbox, 'No such file or directory')."""
    modules = tool_dir.parent / "node_modules"
    (modules / ".bin").mkdir(parents=True)
    (modules / "agent" / "bin").mkdir(parents=True)
    (modules / ".bin" / "agent").symlink_to("../agent/bin/agent")
    assert toolchain_under_tmp(f"/usr/bin:{modules / '.bin'}") == [str(modules.resolve())]


@pytest.mark.integration
def test_a_program_on_a_path_under_tmp_runs_in_the_sandbox(
    tool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_without_bwrap()
    ws = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="ws-"))
    try:
        path = f"{tool_dir}:{os.environ['PATH']}"
        monkeypatch.setenv("PATH", path)
        result = run(["hello-tool"], SandboxPolicy(workspace=ws), env={"PATH": path})
        assert result.returncode == 0, result.stderr
        assert b"hello from" in result.stdout
        write = run(
            ["sh", "-c", f"echo x > {tool_dir}/planted"],
            SandboxPolicy(workspace=ws),
            env={"PATH": path},
        )
        assert write.returncode != 0 and not (tool_dir / "planted").exists()  # read-only
    finally:
        for p in sorted(ws.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        ws.rmdir()


@pytest.mark.integration
def test_an_agent_script_under_tmp_runs_in_the_agent_sandbox(tool_dir: Path) -> None:
    """`python3 /tmp/checkout/bench/chaos_agent.py`: the agent command names a script
    under /tmp (a fresh CI clone there); the private /tmp hid it ('can't open file')."""
    skip_without_bwrap()
    script = tool_dir / "agent.py"
    script.write_text("import sys\nprint('agent up', sys.argv[1])\n")
    ws = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="ws-"))
    try:
        argv = sandboxed_command([sys.executable, str(script), "x"], workspace=ws,
                                 policy=RolePolicy.for_role("implementer"))  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "agent up x\n"
        planted = subprocess.run(
            sandboxed_command(["sh", "-c", 'echo x > "$0"', str(script)], workspace=ws,
                              policy=RolePolicy.for_role("implementer")),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert planted.returncode != 0 and "Read-only" in planted.stderr, planted.stderr
        assert "print" in script.read_text()  # bound, read-only
    finally:
        ws.rmdir()
