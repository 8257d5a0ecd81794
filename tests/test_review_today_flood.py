"""Waits that must stay bounded while a flood of signals keeps coming: `deliver` giving
up on a signal that never arrives, and the journal answering SIGTERM while it cannot
keep up. A real broker, a real flooding publisher process, a real journal process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ipc import bus, signals
from tests.test_bus import Processes, connected
from tests.test_journal import journal_count, start_journal
from tests.waiting import wait_until

FLOOD = """
import sys
from ipc import bus, signals
pub = bus.Publisher(sys.argv[1], source="flood")
pub.wait_connected(timeout=10)
burst = [signals.LoopFailed(loop_id=str(i), reason="flood") for i in range(256)]
for _ in range(int(sys.argv[2])):  # until killed, or this many batches
    pub.publish_many(burst, timeout=30)
"""


@pytest.fixture
def procs() -> Processes:
    p = Processes()
    yield p  # type: ignore[misc]
    p.cleanup()


def flood(procs: Processes, runtime: Path, batches: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", textwrap.dedent(FLOOD), str(runtime), str(batches)]
    return procs.start(argv, stderr=subprocess.DEVNULL)


def test_deliver_gives_up_in_time_while_other_signals_keep_coming(
    procs: Processes, tmp_path: Path
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["LoopFailed"])
    with pub, sub:
        flooder = flood(procs, runtime, 100_000)
        sub.wait_for("LoopFailed", lambda e: e.source == "flood", timeout=20)
        started = time.monotonic()
        with pytest.raises(bus.BusTimeout, match=r"not delivered within 1\.0s"):
            # PatchAccepted is no type `sub` takes: it can never arrive
            bus.deliver(pub, sub, signals.PatchAccepted(hash="ab" * 20), timeout=1.0)
        assert time.monotonic() - started < 10  # was: for as long as the flood lasted
        assert flooder.poll() is None  # the flood was still on


def test_the_journal_stops_on_sigterm_while_a_flood_outruns_it(
    procs: Processes, tmp_path: Path
) -> None:
    runtime, state = tmp_path / "run", tmp_path / "state"
    runtime.mkdir()
    procs.broker(runtime)
    writer = start_journal(procs, runtime, state)
    flooder = flood(procs, runtime, 20_000)  # ~5M signals: more than it stores meanwhile
    wait_until(lambda: journal_count(state) > 10_000, what="the flood in the journal")
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(timeout=15) == 0
    assert flooder.poll() is None  # it stopped while the flood was still on
