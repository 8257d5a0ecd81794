"""The bus under pressure, with a real broker process: a full broker queue makes
`publish` wait its timeout and then raise BusTimeout, `publish_many` say which signals
went, and `recv_many` and `deliver` keep their bounds while bad messages or a flood of
other signals keep coming."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest

from ipc import bus, signals
from ipc.signals import batch as signal_batch
from tests.helpers.bus import connected, flood
from tests.helpers.processes import Processes
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_publish_to_a_full_broker_queue_waits_its_timeout_then_raises_bus_timeout(
    procs: Processes, runtime: Path
) -> None:
    """With XPUB_NODROP, ZeroMQ's poll says POLLOUT even when the queue is full, so the
    retry after it raised a bare zmq.Again at once: no wait, and not the BusTimeout the
    governor's exhaustion watch catches (its thread died, and the governor with it)."""
    broker = procs.broker(runtime)
    with bus.Publisher(runtime, source="test", hwm=10) as pub, bus.Subscriber(runtime) as sub:
        sub.wait_connected(timeout=10)
        pub.wait_connected(timeout=10)
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="sync", reason="sync"), timeout=10)
        os.kill(broker.pid, signal.SIGSTOP)  # its queues fill; nothing is lost meanwhile
        sent = []
        try:
            with pytest.raises(bus.BusTimeout, match=r"broker queue full for 0\.2s"):
                for i in range(1_000_000):  # the kernel's socket buffers take some first
                    sent.append(
                        pub.publish(signals.LoopFailed(loop_id=str(i), reason="x"), timeout=0.2)
                    )
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        assert sent
        end = pub.publish(signals.LoopFailed(loop_id="end", reason="sentinel"), timeout=10)
        got = []
        while not got or got[-1].id != end.id:
            envelope = sub.recv(timeout=10)
            assert envelope is not None, f"only {len(got)} of {len(sent)} arrived"
            got.append(envelope)
        assert [e.id for e in got[:-1]] == [e.id for e in sent]  # none lost, none twice


def test_publish_many_that_times_out_says_which_signals_went(
    procs: Processes, runtime: Path
) -> None:
    """publish_many sends run after run; on BusTimeout some runs are on their way and
    the rest are not, and the caller could not tell which: a retry sent the first ones
    twice (with new ids), no retry lost the rest. PartlyPublished (a BusTimeout) says."""
    broker = procs.broker(runtime)
    with bus.Publisher(runtime, source="test", hwm=10) as pub, bus.Subscriber(runtime) as sub:
        sub.wait_connected(timeout=10)
        pub.wait_connected(timeout=10)
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="sync", reason="sync"), timeout=10)
        os.kill(broker.pid, signal.SIGSTOP)  # its queues fill; nothing is lost meanwhile
        try:
            burst: list[signals.Signal] = []
            for i in range(200_000):  # runs of one: one message a signal
                if i % 2:
                    burst.append(signals.PatchRejected(reason=str(i)))
                else:
                    burst.append(signals.LoopFailed(loop_id=str(i), reason="burst"))
            with pytest.raises(bus.BusTimeout) as caught:
                pub.publish_many(burst, timeout=0.2)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        assert isinstance(caught.value, bus.PartlyPublished)
        sent = caught.value.sent
        assert 0 < len(sent) < len(burst)
        assert len(sent) + len(caught.value.unsent) == len(burst)
        assert [e.signal for e in caught.value.unsent] == burst[len(sent) :]
        assert [e.signal for e in sent] == burst[: len(sent)]
        assert f"{len(sent)} of {len(burst)} signals were sent" in str(caught.value)
        end = pub.publish(signals.LoopFailed(loop_id="end", reason="sentinel"), timeout=10)
        got = []
        while not got or got[-1].id != end.id:
            envelope = sub.recv(timeout=10)
            assert envelope is not None, f"only {len(got)} arrived"
            got.append(envelope)
        assert [e.id for e in got[:-1]] == [e.id for e in sent]  # those, and only those


def _bad_batch() -> list[bytes]:
    """One message of 256 elements that each lack their fields: costly to refuse."""
    bad = {"type": "LoopFailed", "id": "x", "ts": 1.0, "source": "s"}
    return [b"LoopFailed", orjson.dumps([bad] * signal_batch.MAX_BATCH)]


@pytest.mark.parametrize("first_good", [False, True])
def test_recv_many_keeps_its_bound_while_bad_messages_keep_coming(
    procs: Processes, runtime: Path, first_good: bool
) -> None:
    """recv_many took message after message as long as each _take got one, whatever its
    timeout: behind a backlog of bad messages (or a flood of them) recv_many(1,
    timeout=0.05) ran until the queue was empty (387 s in review), where recv returns.
    The journal's drain, and so its SIGTERM, waited that long too."""
    procs.broker(runtime)
    pub, sub = connected(runtime)
    with pub, sub:
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        if first_good:
            good = pub.publish(signals.LoopFailed(loop_id="1", reason="good"))
        frames, n = _bad_batch(), 2000
        for _ in range(n):
            pub.send_frames(frames, timeout=10)
        total = n * signal_batch.MAX_BATCH
        if first_good:  # then the backlog, of which recv_many(2) may take 2 messages
            assert sub.recv_many(2, timeout=10) == [good]
        else:
            wait_until(
                lambda: sub.recv(timeout=0) is None and sub.statistics()["malformed"],
                what="the bad messages to arrive",
            )
            assert sub.recv_many(1, timeout=0.05) == []
        malformed = sub.statistics()["malformed"]
        assert malformed < total / 2, f"recv_many refused {malformed} of {total}: all of them"


def test_deliver_gives_up_while_other_signals_keep_coming(procs: Processes, runtime: Path) -> None:
    """`deliver` waited for its signal as long as other signals kept arriving: under a
    flood it returned only when the flood ended. The flood here never ends (until the
    teardown kills it), so a deliver that does not give up by itself never returns and
    pytest-timeout fails the test."""
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["LoopFailed"])
    with pub, sub:
        flooder = flood(procs, runtime)
        sub.wait_for("LoopFailed", lambda e: e.source == "flood", timeout=20)
        with pytest.raises(bus.BusTimeout, match=r"not delivered within 1\.0s"):
            # PatchAccepted is no type `sub` takes: it can never arrive
            bus.deliver(pub, sub, signals.PatchAccepted(hash="ab" * 20), timeout=1.0)
        assert flooder.poll() is None  # the flood was still on
