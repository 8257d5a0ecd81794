"""The zygote, with real processes: a child it cannot prepare or fork is a failed spawn
(the zygote and its other children live on), a late spawn reply is not taken for the
next spawn's, closing a zygote someone else reaped is quiet, and its death while the
tree boots ends factoryd with 70."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.spec import Start
from supervisor.zygote import SpawnError, ZygoteClient
from tests.harness import Journal, target
from tests.helpers.zygote import wait_spare
from tests.waiting import pid_alive, wait_until

pytestmark = pytest.mark.integration

PIDS = Path("/sys/fs/cgroup/pids")
_names = itertools.count()


@pytest.mark.parametrize(
    ("start", "problem"),
    [
        (Start(command=("true",), env=(("A=B", "x"),)), "illegal environment variable name"),
        (Start(command=("true",), env=(("A", "x\0y"),)), "null byte"),
        (Start(command=("echo", "a\0b")), "cannot exec 'echo': embedded null byte"),
        (Start(target="tests.children:serve", env=(("", "x"),)), "cannot prepare bad: "),
    ],
)
def test_child_that_cannot_be_prepared_is_a_failed_start(start: Start, problem: str) -> None:
    """Not a 'spawned' child that dies at once with exit code 127 and no word why."""
    zygote = ZygoteClient.start()
    log_r, log_w = os.pipe()
    try:
        with pytest.raises(SpawnError, match=problem):
            zygote.spawn("bad", start, log_w, timeout=10)
    finally:
        os.close(log_r)
        os.close(log_w)
        zygote.close()


def test_a_late_spawn_reply_is_not_taken_for_the_next_spawns(tmp_path: Path) -> None:
    """A spawn that timed out on factoryd's side still gets its reply from the zygote
    later; the next spawn took that reply as its own (the wrong pid), and the late
    child ran on untracked."""
    fifo = tmp_path / "import"
    os.mkfifo(fifo)
    zygote = ZygoteClient.start()
    log_r, log_w = os.pipe()
    try:
        slow = Start(target="tests.children:serve", args=(str(tmp_path / "j"),),
                     env=(("CHILDREN_IMPORT_WAITS_ON", str(fifo)),))  # fmt: skip
        with pytest.raises(SpawnError, match="no answer"):
            zygote.spawn("slow", slow, log_w, timeout=0.5)
        with open(fifo, "w") as f:  # the slow import finishes: its reply comes now
            f.write("go")
        pid = zygote.spawn("next", Start(command=("sleep", "30")), log_w, timeout=10)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"FACTORY_CHILD_ID=next" in environ

        def children() -> list[int]:  # but the zygote's spare, if it forked one by now
            zygote.read_nowait()
            kids = psutil.Process(zygote.pid).children()
            return [c.pid for c in kids if c.pid != zygote.spare_pid]

        wait_until(
            lambda: children() == [pid], what="the late child to be killed (nobody tracks it)"
        )
        os.killpg(pid, signal.SIGKILL)
    finally:
        os.close(log_r)
        os.close(log_w)
        zygote.close()


def test_closing_a_zygote_someone_else_already_reaped_is_quiet() -> None:
    """factoryd's orphan reaper may reap a SIGKILLed zygote before close() looks for it
    (it made factoryd exit 1 with a traceback instead of 70, now and then)."""
    zygote = ZygoteClient.start()
    os.kill(zygote.pid, signal.SIGKILL)
    assert os.waitpid(zygote.pid, 0)[0] == zygote.pid  # reaped here, as the reaper would
    zygote.close(timeout=1.0)  # neither ChildProcessError nor a kill of a reused pid


@contextlib.contextmanager
def pids_cgroup() -> Iterator[Path]:
    """A fresh cgroup (v1 pids controller); its members go back to the root after."""
    if not os.access(PIDS / "cgroup.procs", os.W_OK):
        pytest.skip(f"needs a writable pids cgroup at {PIDS} (root, cgroup v1)")
    path = PIDS / f"factory-test-{os.getpid()}-{next(_names)}"
    path.mkdir()
    try:
        yield path
    finally:
        # Members may still fork meanwhile (the zygote refills its spare child): move
        # them out until none is left, then remove the group.
        def emptied() -> bool:
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # gone already
                    (PIDS / "cgroup.procs").write_text(pid)
            try:
                path.rmdir()
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                return False
            return True

        wait_until(emptied, timeout=10, what=f"{path} to be emptied and removed")


@pytest.mark.needs_root
def test_a_fork_the_kernel_refuses_is_a_failed_spawn_not_the_zygotes_death() -> None:
    """os.fork() raising (EAGAIN: a pids limit, or no memory) went up through the
    zygote's loop, which then SIGKILLed every child it had and exited: factoryd lost
    its whole tree (exit 70) because one spawn could not fork."""
    zygote = ZygoteClient.start()
    log_r, log_w = os.pipe()
    started: list[int] = []
    try:
        started.append(zygote.spawn("first", Start(command=("sleep", "60")), log_w, timeout=10))
        spare = wait_spare(zygote)  # forked before the limit, outside the cgroup
        with pids_cgroup() as cgroup:
            (cgroup / "pids.max").write_text("1")  # the zygote alone: no fork fits
            (cgroup / "cgroup.procs").write_text(str(zygote.pid))
            started.append(
                zygote.spawn("second", Start(command=("sleep", "60")), log_w, timeout=10)
            )
            assert started[-1] == spare  # no fork needed: the spare became "second"
            with pytest.raises(SpawnError, match=r"cannot fork third: .*Resource temporarily"):
                zygote.spawn("third", Start(command=("sleep", "60")), log_w, timeout=10)
            assert pid_alive(zygote.pid) and all(pid_alive(pid) for pid in started)
            (cgroup / "pids.max").write_text("max")
            started.append(zygote.spawn("third", Start(command=("sleep", "60")), log_w, timeout=10))
        assert all(pid_alive(pid) for pid in started)
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        os.close(log_r)
        os.close(log_w)
        zygote.close()


def test_zygote_death_during_boot_exits_70(factoryd, journal: Journal, tmp_path: Path) -> None:
    """The zygote dying while the tree starts was reported as a failed start (3), not
    as the zygote's death (70); run()'s own ZygoteGone branch could never be reached."""
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "db"
        {target("ready_after_fifo", str(journal.path), str(fifo))}
        ready = "notify"
        start_timeout_ms = 20000
    """).start(wait_ready=False)
    journal.wait_count("start", "db", 1)
    assert d.proc is not None
    zygote = next(
        p for p in psutil.Process(d.proc.pid).children() if p.pid != journal.events()[0][2]
    )
    zygote.kill()
    assert d.wait_exit(timeout=30) == 70, d.log()
    assert '"event":"zygote_died"' in d.log()
