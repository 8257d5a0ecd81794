"""What a child starts with, as a live factoryd starts it: no signal ignored (exec'd
commands), only stdio open and SIGPIPE's default replaced by Python's (Python targets
forked from the zygote)."""

from __future__ import annotations

from pathlib import Path

from tests.harness import Journal, target
from tests.waiting import wait_until


def test_python_target_gets_broken_pipe_error_not_sigpipe(factoryd, journal: Journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "svc"
        {target("write_to_closed_socket", str(journal.path))}
        restart = "temporary"
    """).start()
    wait_until(
        lambda: journal.count("epipe", "svc") or '"event":"child_exited"' in d.log(),
        timeout=15,
        what="svc to write to a closed socket",
    )
    assert '"event":"child_exited"' not in d.log(), d.log()
    assert journal.count("epipe", "svc") == 1
    assert d.node("svc")["state"] == "running"


def test_command_child_starts_with_no_signal_ignored(factoryd, tmp_path: Path) -> None:
    out = tmp_path / "sigign"
    factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "sh"
        command = ["sh", "-c", "grep SigIgn /proc/$$/status > {out}.tmp && mv {out}.tmp {out}"]
        restart = "temporary"
    """).start()
    wait_until(out.exists, timeout=15, what="the child to write its SigIgn mask")
    mask = int(out.read_text().split()[1], 16)
    assert mask == 0, f"exec'd child inherits ignored signals: mask {mask:#x}"


def test_python_target_starts_with_only_stdio_open(factoryd, tmp_path: Path) -> None:
    """Exec'd commands had every fd above 2 closed; Python targets kept what the
    zygote held (its epoll fd, fds factoryd itself inherited)."""
    out = tmp_path / "fds"
    factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "t"
        target = "tests.children:record_fds"
        args = ["{out}"]
    """).start()
    wait_until(out.exists, timeout=15, what="the child to list its fds")
    assert out.read_text() == ""
