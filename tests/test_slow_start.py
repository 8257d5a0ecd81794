"""A child whose start takes seconds (a target importing big modules) must not freeze
the supervisor: the zygote keeps reporting other children's exits, and factoryd keeps
beating its watchdog and reading logs while it waits. The slow import is a FIFO the
test opens when it has seen what it waits for, so nothing here waits on time alone."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

import psutil
import pytest

from supervisor.spec import Start
from supervisor.zygote import ZygoteClient
from tests.harness import target
from tests.waiting import wait_until

pytestmark = pytest.mark.integration  # a live factoryd or zygote


def _release(fifo: Path) -> None:
    """Let the child blocked in its import go on (it holds the FIFO open for reading)."""
    with open(fifo, "w") as f:
        f.write("go")


def test_the_zygote_reports_an_exit_while_another_child_is_still_importing(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "import"
    os.mkfifo(fifo)
    zygote = ZygoteClient.start()
    log_r, log_w = os.pipe()
    try:
        other = zygote.spawn("other", Start(command=("sleep", "30")), log_w, timeout=10)
        seen: list[str] = []

        def pump(seconds: float) -> None:  # factoryd's loop, reduced to what counts here
            if zygote.wait_readable(seconds):
                zygote.read_nowait()
            if "killed" not in seen:
                os.killpg(other, signal.SIGKILL)
                seen.append("killed")
            if "exit" not in seen and any(e.pid == other for e in zygote.exits):
                seen.append("exit")  # reported while the import still hangs
                _release(fifo)

        slow = Start(target="tests.children:serve", args=(str(tmp_path / "j"),),
                     env=(("CHILDREN_IMPORT_WAITS_ON", str(fifo)),))  # fmt: skip
        pid = zygote.spawn("slow", slow, log_w, timeout=20, pump=pump)
        assert seen == ["killed", "exit"]
        assert pid > 0 and pid != other
        os.killpg(pid, signal.SIGKILL)
    finally:
        os.close(log_r)
        os.close(log_w)
        zygote.close()


def test_factoryd_keeps_its_watchdog_while_a_restarting_child_imports_slowly(
    factoryd, journal, tmp_path: Path
) -> None:
    fifo = tmp_path / "import"
    os.mkfifo(fifo)
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(15)
    config = f"""
        [supervisor]
        intensity = 5
        period = 30
        [[supervisor.children]]
        id = "slow"
        {target("serve", str(journal.path))}
        env = {{ CHILDREN_IMPORT_WAITS_ON = "{fifo}" }}
    """
    try:
        d = factoryd(
            config, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}
        ).start(wait_ready=False)
        _release(fifo)  # the first start imports at once
        journal.wait_count("start", "slow", 1)
        wait_until(lambda: d.pid("slow") is not None, what="slow running")
        first = d.pid("slow")
        zygote = psutil.Process(d.status()["daemon"]["zygote"]["pid"])
        os.killpg(first, signal.SIGKILL)  # the restart now hangs in its import
        wait_until(
            lambda: [c for c in zygote.children() if c.pid != first],
            what="the restarted child in its import",
        )
        listener.setblocking(False)  # what came before the restart does not count
        with contextlib.suppress(BlockingIOError):
            while True:
                listener.recv(4096)
        listener.settimeout(15)
        beats = 0
        while beats < 3:  # each recv is bounded by 15 s; a frozen factoryd sends none
            beats += listener.recv(4096).decode().count("WATCHDOG=1")
        _release(fifo)
        journal.wait_count("start", "slow", 2)
        # factoryd answers status while it starts a child ("starting": the zygote's reply
        # with the new pid may come after the child's own first words)
        wait_until(lambda: d.pid("slow") not in (None, first), what="the restarted pid")
    finally:
        listener.close()


def test_sigterm_while_a_child_imports_stops_factoryd_at_once(
    factoryd, journal, tmp_path: Path
) -> None:
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "slow"
        {target("serve", str(journal.path))}
        env = {{ CHILDREN_IMPORT_WAITS_ON = "{fifo}" }}
    """).start(wait_ready=False)
    assert d.proc is not None
    factoryd_proc = psutil.Process(d.proc.pid)
    wait_until(  # factoryd -> zygote -> the child, blocked in its import
        lambda: any(z.children() for z in factoryd_proc.children()),
        what="the child in its import",
    )
    kids = [k for z in factoryd_proc.children() for k in z.children()]
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit() == 0  # within the harness's bound, not after the 60 s spawn limit
    assert '"event":"stopped_during_start"' in d.log()
    wait_until(lambda: not any(k.is_running() and k.status() != "zombie" for k in kids),
               what="the importing child gone")  # fmt: skip
