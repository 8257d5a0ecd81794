"""procs.sandbox: a command under bubblewrap writes only its workspace (and not the role's
locked paths in it), has no network, dies whole at its timeout, and meets its memory limit.
Real processes throughout; skipped, with the reason, where bwrap cannot sandbox here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.agent.locked_paths import locked_paths
from procs.agent.roles import RolePolicy
from procs.sandbox import (
    SandboxPolicy,
    SandboxResult,
    SandboxUnavailable,
    command_prefix,
    run,
    sandbox_status,
)
from tests.helpers.sandbox import pids_with, skip_without_bwrap
from tests.waiting import wait_until

ENV = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}

# Run inside the sandbox: try each write and the connection, print what happened.
PROBE = """
import json, socket, sys
outcomes = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        with open(path, "w") as handle:
            handle.write("x")
        outcomes[name] = "written"
    except OSError as exc:
        outcomes[name] = exc.strerror
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5).close()
    outcomes["network"] = "connected"
except OSError as exc:
    outcomes["network"] = exc.strerror or type(exc).__name__
print(json.dumps(outcomes))
"""


@pytest.fixture
def ws() -> Iterator[Path]:
    """A workspace outside /tmp (whose parents are the host's, as a RAM disk mount's are):
    under /tmp they would exist only in the sandbox's private /tmp."""
    root = Path(tempfile.mkdtemp(prefix="factory-sandbox-", dir="/var/tmp"))
    workspace = root / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "tests").mkdir()
    (workspace / "tests" / "test_app.py").write_text("def test_it(): pass\n")
    (workspace / "conftest.py").write_text("")
    try:
        yield workspace
    finally:
        shutil.rmtree(root)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def probe(policy: SandboxPolicy, targets: dict[str, Path], port: int) -> dict[str, str]:
    argv = [sys.executable, "-c", PROBE, json.dumps({k: str(v) for k, v in targets.items()})]
    result = run([*argv, str(port)], policy, env=ENV)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


@pytest.mark.integration  # runs real commands
def test_only_the_workspace_is_writable_and_there_is_no_network(
    ws: Path, listener: socket.socket
) -> None:
    skip_without_bwrap()
    implementer = RolePolicy.for_role("implementer")
    policy = SandboxPolicy(ws, readonly_paths=locked_paths(implementer, ws), timeout_s=60)
    targets = {
        "etc": Path("/etc") / f"factory-{uuid.uuid4().hex}",
        "parent": ws.parent / "escaped.txt",
        "tests": ws / "tests" / "test_app.py",
        "new_test": ws / "tests" / "test_new.py",
        "harness": ws / "conftest.py",
        "code": ws / "src" / "app.py",
    }
    outcomes = probe(policy, targets, listener.getsockname()[1])
    assert outcomes.pop("code") == "written"
    assert (ws / "src" / "app.py").read_text() == "x"
    network = outcomes.pop("network")
    assert network in ("Network is unreachable", "Connection refused"), network
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing reached the host's listener
    assert outcomes == dict.fromkeys(outcomes, "Read-only file system")
    assert not targets["etc"].exists() and not targets["parent"].exists()
    assert (ws / "tests" / "test_app.py").read_text() == "def test_it(): pass\n"
    assert not (ws / "tests" / "test_new.py").exists()


@pytest.mark.integration  # runs real commands
def test_network_is_kept_only_when_the_policy_asks(ws: Path, listener: socket.socket) -> None:
    skip_without_bwrap()
    policy = SandboxPolicy(ws, timeout_s=60, network=True)
    assert probe(policy, {}, listener.getsockname()[1]) == {"network": "connected"}


@pytest.mark.integration  # runs real commands
def test_a_workspace_under_tmp_keeps_its_parents_private(tmp_path: Path) -> None:
    skip_without_bwrap()
    ws = tmp_path / "ws"
    ws.mkdir()
    script = "open('../escaped.txt', 'w').write('x'); open('inside.txt', 'w').write('y')"
    result = run([sys.executable, "-c", script], SandboxPolicy(ws, timeout_s=60), env=ENV)
    assert result.returncode == 0, result.stderr.decode()
    assert (ws / "inside.txt").read_text() == "y"
    assert not (tmp_path / "escaped.txt").exists()  # it went to the sandbox's private /tmp


@pytest.mark.integration  # runs real commands
def test_the_timeout_kills_everything_the_command_started(ws: Path) -> None:
    skip_without_bwrap()
    marker = f"marker-{uuid.uuid4().hex}"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)' {marker}"
    # One child in the shell's group, one that left it (setsid): both go.
    command = f"{sleeper} & setsid {sleeper} & echo started; wait"
    result = run(["sh", "-c", command], SandboxPolicy(ws, timeout_s=1.0), env=ENV)
    assert result.timed_out is True
    assert result.returncode == -signal.SIGKILL
    assert result.stdout == b"started\n"
    wait_until(lambda: not pids_with(marker), timeout=10, what="the sandbox's processes to die")


@pytest.mark.integration  # runs real commands
def test_the_sandbox_stays_in_the_callers_process_group_and_session(ws: Path) -> None:
    skip_without_bwrap()
    marker = f"marker-{uuid.uuid4().hex}"
    argv = [sys.executable, "-c", "import time; time.sleep(60)", marker]
    outcome: list[SandboxResult] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run(argv, SandboxPolicy(ws, timeout_s=60), env=ENV))
    )
    worker.start()
    try:
        # bwrap, its init in the PID namespace, prlimit's exec: the command itself.
        command = wait_until(
            lambda: [pid for pid in pids_with(marker) if _argv0(pid) == sys.executable],
            timeout=30, what="the command to start",
        )[0]  # fmt: skip
        for pid in pids_with(marker):
            assert (os.getpgid(pid), os.getsid(pid)) == (os.getpgrp(), os.getsid(0))
        os.kill(command, signal.SIGKILL)  # as the caller's killpg would
    except BaseException:
        for pid in pids_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        worker.join(timeout=30)
    assert outcome[0].returncode == 128 + signal.SIGKILL  # bwrap reports it as a shell does
    assert outcome[0].timed_out is False


def _argv0(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None


@pytest.mark.integration  # runs real commands
def test_the_memory_limit_is_enforced(ws: Path) -> None:
    skip_without_bwrap()
    policy = SandboxPolicy(ws, timeout_s=60, memory_mb=200)
    allocate = "import sys; x = bytearray(int(sys.argv[1]) * 1024 * 1024); print('ok')"
    small = run([sys.executable, "-c", allocate, "16"], policy, env=ENV)
    assert (small.returncode, small.stdout) == (0, b"ok\n"), small.stderr.decode()
    large = run([sys.executable, "-c", allocate, "400"], policy, env=ENV)
    assert large.returncode != 0
    assert b"MemoryError" in large.stderr


@pytest.mark.integration  # runs real commands
def test_without_bwrap_nothing_runs_unless_the_operator_chose_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PATH with the tools the command needs but no bwrap.
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("prlimit", "sh"):
        found = shutil.which(name)
        assert found is not None
        (tools / name).symlink_to(found)
    monkeypatch.setenv("PATH", str(tools))
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(SandboxUnavailable, match=r"bwrap .* is not on PATH"):
        run(["sh", "-c", "echo ran > ran.txt"], SandboxPolicy(ws), env={"PATH": str(tools)})
    assert not (ws / "ran.txt").exists()
    status = sandbox_status("bwrap")
    assert (status["available"], status["bwrap"]) == (False, None)
    assert "not on PATH" in status["reason"]

    unconfined = SandboxPolicy(ws, mode="none", timeout_s=60)
    result = run(["sh", "-c", "echo ran > ran.txt"], unconfined, env={"PATH": str(tools)})
    assert result.returncode == 0 and (ws / "ran.txt").exists()
    assert command_prefix(unconfined)[0].endswith("prlimit")  # the memory limit still holds
    status = sandbox_status("none")
    assert status["available"] is True and "without isolation" in status["reason"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"readonly_paths": ("/etc",)}, "readonly path '/etc' is outside the workspace"),
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"memory_mb": 1.5}, "memory_mb must be an integer"),
        ({"mode": "docker"}, "sandbox mode must be one of"),
    ],
)
def test_a_bad_policy_names_the_field(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SandboxPolicy(tmp_path, **fields)


UNIX_PROBE = """
import json, os, socket, sys
out = {"run": sorted(os.listdir("/run"))}
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    out["control"] = "connected"
except OSError as exc:
    out["control"] = exc.strerror or type(exc).__name__
print(json.dumps(out))
"""


@pytest.mark.integration  # runs real commands
def test_agent_code_cannot_reach_the_factorys_control_sockets(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network namespace does not cover filesystem unix sockets: by default /run and
    the runtime dir are empty in the sandbox, so a test an agent wrote cannot talk to
    factoryd (`shutdown`, `kill`) as the same user. With no paths hidden it could."""
    skip_without_bwrap()
    runtime = Path(tempfile.mkdtemp(prefix="factory-run-", dir=ws.parent))
    try:
        monkeypatch.setenv("FACTORY_RUNTIME_DIR", str(runtime))
        control = socket.socket(socket.AF_UNIX)
        control.bind(str(runtime / "factoryd.sock"))
        control.listen(1)
        argv = [sys.executable, "-c", UNIX_PROBE, str(runtime / "factoryd.sock")]
        hidden = run(argv, SandboxPolicy(ws, timeout_s=60), env=ENV)
        assert hidden.returncode == 0, hidden.stderr
        assert json.loads(hidden.stdout) == {"run": [], "control": "No such file or directory"}
        shown = run(argv, SandboxPolicy(ws, timeout_s=60, hidden_paths=()), env=ENV)
        assert json.loads(shown.stdout)["control"] == "connected"  # the probe can tell
        control.close()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
