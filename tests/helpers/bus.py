"""Bus helpers: a connected publisher/subscriber pair, and a flooding publisher process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ipc.bus import Publisher, Subscriber
from tests.helpers.processes import Processes

FLOOD = """
import sys
from ipc import bus, signals
pub = bus.Publisher(sys.argv[1], source="flood")
pub.wait_connected(timeout=10)
burst = [signals.LoopFailed(loop_id=str(i), reason="flood") for i in range(256)]
for _ in range(int(sys.argv[2])):  # until killed, or this many batches
    pub.publish_many(burst, timeout=30)
"""
ENDLESS = 10**12  # batches: a flood that lasts until the test's teardown kills it


def connected(runtime: Path, **kw: object) -> tuple[Publisher, Subscriber]:
    """A publisher and a subscriber (`kw` as for Subscriber), both connected to the
    broker of `runtime` (each wait bounded by 10 s)."""
    pub = Publisher(runtime, source="test")
    sub = Subscriber(runtime, **kw)  # type: ignore[arg-type]
    sub.wait_connected(timeout=10)
    pub.wait_connected(timeout=10)
    return pub, sub


def flood(procs: Processes, runtime: Path, batches: int = ENDLESS) -> subprocess.Popen[str]:
    """A process publishing batches of 256 LoopFailed (source "flood") as fast as it can."""
    argv = [sys.executable, "-c", textwrap.dedent(FLOOD), str(runtime), str(batches)]
    return procs.start(argv, stderr=subprocess.DEVNULL)
