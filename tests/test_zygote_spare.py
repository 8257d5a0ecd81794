"""The zygote's spare: a child forked and made clean ahead of need becomes the next
spawned child, and is then the child a fork would have made (own process group, dies
with the zygote, stdout/stderr on the log pipe, the environment and cwd asked for,
secrets scrubbed, only stdio open, exec and import failures reported as failed
starts). A spare killed while it waits is no child's exit, and another takes its place."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.spec import Start
from supervisor.zygote import SpawnError, ZygoteClient
from tests.helpers.zygote import wait_spare
from tests.waiting import pid_alive, wait_gone, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def zygote(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZygoteClient]:
    monkeypatch.setenv("SPARE_TEST_TOKEN", "s3cret")  # in the zygote's environment
    zygote = ZygoteClient.start()
    try:
        yield zygote
    finally:
        zygote.close()


@pytest.fixture
def log_pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


def read_until(fd: int, marker: bytes, *, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} on the log pipe within {timeout}s: {out!r}"
        if select.select([fd], [], [], remaining)[0]:
            out += os.read(fd, 65536)
    return out


def test_spawn_after_idle_is_the_spare_and_a_clean_child(
    zygote: ZygoteClient, log_pipe: tuple[int, int], tmp_path: Path
) -> None:
    log_r, log_w = log_pipe
    spare = wait_spare(zygote)
    report = tmp_path / "report"
    # The shell's own signal state, read first and with builtins only: while a shell waits
    # for a child it runs (grep, $(pwd)) it blocks every signal, so a child reading its
    # parent's status then saw them blocked (a CI run under load did).
    script = (
        'while read -r line; do case $line in Sig[IB]*) echo "$line";; esac; done '
        "< /proc/$$/status; "
        'echo "id=$FACTORY_CHILD_ID token=${SPARE_TEST_TOKEN:-none} mine=$MINE cwd=$(pwd)"; '
        f"echo out-done; echo err-done >&2; exec sleep 60 > {report}"
    )
    start = Start(command=("sh", "-c", script), env=(("MINE", "1"),), cwd=str(tmp_path))
    pid = zygote.spawn("spared", start, log_w, timeout=10)
    try:
        assert pid == spare
        out = read_until(log_r, b"err-done").decode()
        assert f"id=spared token=none mine=1 cwd={tmp_path}" in out
        assert "SigIgn:\t0000000000000000" in out and "SigBlk:\t0000000000000000" in out
        assert os.getpgid(pid) == pid
        wait_until(report.exists, what="sleep to run")  # exec'd, its shell gone
        os.kill(zygote.pid, signal.SIGKILL)  # PR_SET_PDEATHSIG: the child dies with it
        wait_gone(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_secret_in_pass_env_reaches_a_spared_child(
    zygote: ZygoteClient, log_pipe: tuple[int, int]
) -> None:
    log_r, log_w = log_pipe
    spare = wait_spare(zygote)
    start = Start(
        command=("sh", "-c", 'echo "token=$SPARE_TEST_TOKEN"; exec sleep 60'),
        pass_env=("SPARE_TEST_TOKEN",),
    )
    pid = zygote.spawn("passed", start, log_w, timeout=10)
    try:
        assert pid == spare
        assert b"token=s3cret" in read_until(log_r, b"\n")
    finally:
        os.killpg(pid, signal.SIGKILL)


def test_spared_target_starts_with_only_stdio_open(
    zygote: ZygoteClient, log_pipe: tuple[int, int], tmp_path: Path
) -> None:
    _log_r, log_w = log_pipe
    spare = wait_spare(zygote)
    out = tmp_path / "fds"
    start = Start(target="tests.children:record_fds", args=(str(out),))
    pid = zygote.spawn("fds", start, log_w, timeout=10)
    try:
        assert pid == spare
        wait_until(out.exists, what="the child to list its fds")
        assert out.read_text() == ""
    finally:
        os.killpg(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("start", "problem"),
    [
        (Start(command=("/nonexistent/factory-child",)), "cannot exec '/nonexistent/"),
        (Start(target="tests.no_such_module:main"), "cannot load target"),
        (Start(command=("true",), env=(("A", "x\0y"),)), "null byte"),
    ],
)
def test_spared_child_that_cannot_start_is_a_failed_start(
    zygote: ZygoteClient, log_pipe: tuple[int, int], start: Start, problem: str
) -> None:
    _log_r, log_w = log_pipe
    spare = wait_spare(zygote)
    with pytest.raises(SpawnError, match=problem):
        zygote.spawn("bad", start, log_w, timeout=10)
    wait_gone(spare)
    assert not zygote.exits  # never factoryd's child: no exit to report
    pid = zygote.spawn("next", Start(command=("sleep", "60")), log_w, timeout=10)
    os.killpg(pid, signal.SIGKILL)


def test_a_spare_killed_while_it_waits_is_replaced_not_reported(
    zygote: ZygoteClient, log_pipe: tuple[int, int]
) -> None:
    _log_r, log_w = log_pipe
    first = wait_spare(zygote)
    os.kill(first, signal.SIGKILL)
    second = wait_spare(zygote, other_than=first)
    assert not pid_alive(first)
    assert not zygote.exits and zygote.orphans_reaped == 0
    pid = zygote.spawn("after", Start(command=("sleep", "60")), log_w, timeout=10)
    assert pid == second
    os.killpg(pid, signal.SIGKILL)
