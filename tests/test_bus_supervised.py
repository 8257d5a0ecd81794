"""The bus, the journal writer and the governor as supervised children of a real factoryd."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import bus, control, ledger, paths, signals
from tests.harness import Factoryd
from tests.waiting import wait_gone, wait_until

CONFIG = """
    [supervisor]
    strategy = "one_for_one"
    intensity = 5
    period = 30

    [[supervisor.children]]
    id = "bus"
    target = "procs.bus.service:main"
    args = []
    shutdown_ms = 5000

    [[supervisor.children]]
    id = "signal_journal"
    target = "procs.journal.service:main"
    args = []
    shutdown_ms = 5000

    [[supervisor.children]]
    id = "resource_governor"
    target = "procs.governor.service:main"
    args = ["--max-loops", "2", "--gpu-tickets", "1"]
    shutdown_ms = 5000
"""


@pytest.fixture
def daemon(factoryd: type[Factoryd]) -> Iterator[Factoryd]:
    d = factoryd(CONFIG).start()
    yield d
    d.stop()
    ledger.destroy(d.runtime_dir)


def _journal_types(d: Factoryd) -> list[str]:
    code, out, _ = d.ctl("--state-dir", str(d.tmp / "state"), "signals", "--json", "-n", "1000")
    if code != 0:
        return []
    return [json.loads(line)["type"] for line in out.splitlines()]


def test_subscribers_receive_again_after_factoryd_restarts_a_sigkilled_broker(
    daemon: Factoryd,
) -> None:
    runtime = daemon.runtime_dir
    pub = bus.Publisher(runtime, source="test")
    sub = bus.Subscriber(runtime, types=["PatchRejected"])
    with pub, sub:
        sub.wait_connected(timeout=20)
        pub.wait_connected(timeout=20)
        bus.deliver(pub, sub, signals.PatchRejected(reason="before"), timeout=20)

        old = daemon.pid("bus")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_gone(old)
        wait_until(
            lambda: daemon.pid("bus") not in (None, old), timeout=20, what="factoryd to restart bus"
        )
        got = bus.deliver(pub, sub, signals.PatchRejected(reason="after"), timeout=20)
        assert got.signal.reason == "after"
        assert sub.statistics()["welcomes"] == 2
        assert daemon.node("bus")["restarts"] >= 1

        # the journal writer's subscription came back too
        def journaled() -> bool:
            pub.publish(signals.PatchAccepted(hash="f" * 40, patch_id="after-restart"))
            return "PatchAccepted" in _journal_types(daemon)

        wait_until(journaled, timeout=20, what="a signal journaled after the restart")


def test_the_governor_serves_the_ledger_under_factoryd(daemon: Factoryd) -> None:
    runtime = daemon.runtime_dir
    sock = paths.control_socket(runtime, "resource_governor")
    status = wait_until(lambda: _try_status(sock), timeout=20, what="the governor's control socket")
    assert status["limits"]["max_loops"] == 2
    led = ledger.TicketLedger.open(runtime)
    ticket = led.request_loop_slot(label="supervised")
    assert ledger.snapshot(runtime)["resources"]["loop"]["in_use"] == 1
    assert led.release(ticket)


def _try_status(sock: Path) -> dict | None:
    try:
        return control.call(sock, "status", timeout=10)
    except control.DaemonNotRunning:
        return None


def test_factoryctl_status_shows_the_governors_ledger(daemon: Factoryd) -> None:
    wait_until(lambda: daemon.status()["resources"] is not None, timeout=20,
               what="the governor to create its ledger")  # fmt: skip
    resources = daemon.status()["resources"]["resources"]
    assert resources["loop"]["limit"] == 2 and resources["loop"]["in_use"] == 0
    held = ledger.TicketLedger.open(daemon.runtime_dir)
    with held:
        ticket = held.request_loop_slot(label="status-test", timeout=5)
        code, out, _ = daemon.ctl("status")
        held.release(ticket)
    assert code == 0
    row = next(line.split() for line in out.splitlines() if line.startswith("loop "))
    assert row[:4] == ["loop", "1", "2", "1"]  # in use, limit, free
    assert "holders: 1" in out
    assert f"  pid {os.getpid()} status-test: loop 1\n" in out  # the holder and what it holds
