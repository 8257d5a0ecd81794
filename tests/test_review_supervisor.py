"""Adversarial review of the supervisor core: each test pins a bug that was found
(and fixed) by driving a live factoryd or the zygote with real processes."""

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
