"""`factoryctl logs -f`: numbered lines, asked for after the last one printed, drops
announced, and an end when factoryd goes away. A real factoryd and a real factoryctl
process; the child prints when signalled, so every wait is on output, not on time."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

from ipc.control import RequestRefused
from supervisor import child_logs
from supervisor.child_logs import Ring
from supervisor.ctl.exit_status import ExitStatus
from tests.harness import ROOT, target


def _ring(n: int) -> Ring:
    ring = Ring()
    for i in range(1, n + 1):
        ring.append(float(i), f"line {i}")
    return ring


def test_a_ring_gives_what_came_after_a_number_and_counts_what_it_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(child_logs, "_RING_LINES", 5)
    ring = _ring(8)  # holds 4..8
    assert ring.after(6, 10) == ([(7.0, "line 7"), (8.0, "line 8")], 8, 0)
    assert ring.after(5, 1) == ([(6.0, "line 6")], 6, 0)
    assert ring.after(1, 2) == ([(4.0, "line 4"), (5.0, "line 5")], 5, 2)  # 2 and 3 lost
    assert ring.after(8, 10) == ([], 8, 0)
    assert ring.after(99, 1) == ([(4.0, "line 4")], 4, 3)  # numbering began anew
    assert Ring().after(0, 5) == ([], 0, 0)


def test_bad_logs_arguments_are_refused_by_name(tmp_path) -> None:
    import io

    from supervisor.child_logs import ChildLogs
    from supervisor.control_api import ControlApi

    logs = ChildLogs(io.StringIO())
    read_fd, write_fd = logs.open_pipe("svc")
    os.close(write_fd)
    while logs.read(read_fd):
        pass
    api = ControlApi(
        registry=None, root=None, child_logs=logs,  # type: ignore[arg-type]
        statistics=dict, request_stop=lambda: None, reload=dict, runtime_dir=tmp_path,
    )  # fmt: skip
    for args, problem in [
        ({"id": "svc", "after": -1}, "args.after"),
        ({"id": "svc", "after": "3"}, "args.after"),
        ({"id": "svc", "after": True}, "args.after"),
        ({"id": "svc", "lines": True}, "args.lines"),
    ]:
        with pytest.raises(RequestRefused, match=problem):
            api.handle("logs", args)
    assert api.handle("logs", {"id": "svc", "after": 0}) == {
        "id": "svc",
        "lines": [],
        "seq": 0,
        "dropped": 0,
    }


class Follower:
    """A real `factoryctl logs -f` process whose output is read with deadlines."""

    def __init__(self, runtime_dir: str, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.ctl.cli", "--runtime-dir", runtime_dir, *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        self.lines: list[str] = []
        self._partial = b""

    def wait_line(self, wanted: str, *, timeout: float = 20.0) -> list[str]:
        """Lines read so far, once `wanted` is among them (raw reads: a buffered
        readline would hide lines already read from the selector)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while wanted not in self.lines:
            left = deadline - time.monotonic()
            assert left > 0, f"no {wanted!r} within {timeout}s; got {self.lines[-5:]}"
            if self._sel.select(left):
                data = os.read(fd, 65536)
                assert data, f"factoryctl ended ({self.proc.wait(5)}): {self.lines[-5:]}"
                self._partial += data
                *done, rest = self._partial.split(b"\n")
                self._partial = rest
                self.lines += [_unstamped(line.decode()) for line in done]
        return self.lines

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._sel.close()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()  # type: ignore[union-attr]


def _unstamped(line: str) -> str:
    """'12:00:01 said 3' -> 'said 3'; a '-- N lines dropped --' marker as it is."""
    return line if line.startswith("-- ") else line.split(" ", 1)[-1]


def _talker(journal) -> str:
    return f"""
        [supervisor]
        [[supervisor.children]]
        id = "talker"
        {target("say_on_usr1", str(journal.path), "700")}
    """


def test_follow_prints_new_lines_in_order_and_announces_dropped_ones(factoryd, journal) -> None:
    d = factoryd(_talker(journal)).start()
    pid = d.pid("talker")
    os.kill(pid, signal.SIGUSR1)
    follower = Follower(str(d.runtime_dir), "logs", "talker", "-n", "1", "-f", "--for", "60")
    try:
        follower.wait_line("said 1")  # the tail first
        os.kill(pid, signal.SIGUSR1)
        follower.wait_line("said 2")
        os.kill(pid, signal.SIGUSR1)
        assert follower.wait_line("said 3") == ["said 1", "said 2", "said 3"]
        # 700 lines at once: more than the ring's 500 may be gone before the next ask
        os.kill(pid, signal.SIGUSR2)
        lines = follower.wait_line("said 703")
        said = [int(x.split()[1]) for x in lines if x.startswith("said")]
        dropped = sum(int(x.split()[1]) for x in lines if x.startswith("-- "))
        assert said == sorted(said) and len(set(said)) == len(said)  # in order, no repeats
        assert len(said) + dropped == 703  # every line printed or counted as dropped
    finally:
        follower.close()


def test_follow_ends_with_not_running_when_factoryd_goes_away(factoryd, journal) -> None:
    d = factoryd(_talker(journal)).start()
    os.kill(d.pid("talker"), signal.SIGUSR1)
    follower = Follower(str(d.runtime_dir), "logs", "talker", "-f")
    try:
        follower.wait_line("said 1")
        d.stop()
        assert follower.proc.wait(timeout=20) == ExitStatus.NOT_RUNNING
        assert "factoryd went away" in follower.proc.stderr.read()  # type: ignore[union-attr]
    finally:
        follower.close()


def test_logs_without_follow_still_prints_the_tail_and_refuses_bad_flags(factoryd, journal) -> None:
    d = factoryd(_talker(journal)).start()
    os.kill(d.pid("talker"), signal.SIGUSR1)
    follower = Follower(str(d.runtime_dir), "logs", "talker", "-f", "--for", "20")
    follower.wait_line("said 1")
    follower.close()
    code, out, _ = d.ctl("logs", "talker", "-n", "5")
    assert code == ExitStatus.SUCCESS and out.rstrip().endswith("said 1")
    code, _, err = d.ctl("logs", "talker", "-n", "-1")
    assert code == ExitStatus.USAGE and "-n must be >= 0" in err
    code, _, err = d.ctl("logs", "talker", "-f", "--for", "0")
    assert code == ExitStatus.USAGE and "--for must be > 0" in err
    code, _, err = d.ctl("logs", "nobody")
    assert code == ExitStatus.NOT_FOUND
