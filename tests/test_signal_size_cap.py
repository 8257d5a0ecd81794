"""A signal says "look"; it is small. The publisher refuses one past MAX_SIGNAL_BYTES
(nothing sent), the broker drops a message past MAX_MESSAGE_BYTES from a raw sender,
and the journal never stores an oversized signal: each is counted, nothing else lost."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from ipc import bus, signals
from ipc.journal import JournalWriter
from tests.helpers.bus import connected
from tests.helpers.processes import Processes

pytestmark = pytest.mark.integration

HUGE = "x" * (signals.MAX_SIGNAL_BYTES + 1)


def test_publisher_refuses_an_oversized_signal_and_sends_the_rest(
    procs: Processes, runtime: Path
) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["LoopFailed"])
    with pub, sub:
        with pytest.raises(signals.SignalTooLarge, match=r"LoopFailed .* bytes, more than"):
            pub.publish(signals.LoopFailed(loop_id="big", reason=HUGE))
        assert pub.statistics()["too_large"] == 1
        # many small signals whose batch would pass the message bound still all go
        medium = "m" * (signals.MAX_MESSAGE_BYTES // 8)
        burst = [signals.LoopFailed(loop_id=str(i), reason=medium) for i in range(10)]
        pub.publish_many(burst)
        got = sub.recv_many(20, timeout=10)
        while len(got) < 10:
            more = sub.recv_many(20, timeout=10)
            assert more, f"only {len(got)} of 10 arrived"
            got += more
        assert [e.signal.loop_id for e in got] == [str(i) for i in range(10)]
        assert bus.deliver(pub, sub, signals.LoopFailed("after", "ok"), timeout=10)


def test_broker_drops_a_raw_message_past_the_bound(procs: Processes, runtime: Path) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["LoopFailed"])
    _, watcher = connected(runtime, types=["LoopFailed"])
    with pub, sub, watcher:
        body = {"type": "LoopFailed", "id": "raw", "ts": time.time(), "source": "raw"}
        big = orjson.dumps({**body, "loop_id": "raw", "reason": "y" * signals.MAX_MESSAGE_BYTES})
        pub.send_frames([b"LoopFailed", big])
        got = bus.deliver(pub, sub, signals.LoopFailed("next", "ok"), timeout=20)
        assert got.signal.loop_id == "next"
        # the watcher saw what passed the broker, in order: "next", never the raw one
        seen = watcher.recv_many(100, timeout=10)
        while not any(e.id == got.id for e in seen):
            more = watcher.recv_many(100, timeout=10)
            assert more, "the watcher never saw the delivered signal"
            seen += more
        assert [e.id for e in seen if e.id == "raw"] == []


def test_journal_refuses_an_oversized_signal_and_keeps_the_rest(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "signals.sqlite3")
    try:
        big = signals.envelop(signals.LoopFailed("big", HUGE), source="t")
        small = signals.envelop(signals.LoopFailed("small", "ok"), source="t")
        assert writer.append_many([big, small]) == 1
        assert writer.too_large == 1
    finally:
        writer.close()
