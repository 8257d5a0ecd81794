"""Review of the bus batch path (publish_many, recv / recv_many / _take, unsubscribe):
each test is a bug found in review, shown with a real broker process."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ipc import bus, signals
from ipc.signals import batch as signal_batch
from tests.test_bus import Processes, connected
from tests.waiting import wait_until


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    yield p
    p.cleanup()


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def test_a_signal_read_ahead_by_a_poll_is_not_delivered_after_its_unsubscribe(
    procs: Processes, runtime: Path
) -> None:
    """A service polls `subscriber.socket` (as documented); ZeroMQ then reads the next
    message ahead and hands it out later without filtering it again, so a signal of a
    type unsubscribed in between still came out of recv."""
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["PatchRejected", "LoopFailed"])
    with pub, sub:
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        pub.publish(signals.PatchRejected(reason="before the unsubscribe"))
        pub.publish_many([signals.PatchRejected(reason=str(i)) for i in range(3)])
        assert sub.socket.poll(10_000)  # a service's Poller: the message is read ahead
        sub.unsubscribe("PatchRejected")
        sent = pub.publish(signals.LoopFailed(loop_id="1", reason="after"))
        got = []  # in order, up to the sentinel: what was published before it came first
        while not got or got[-1].id != sent.id:
            envelope = sub.recv(timeout=10)
            assert envelope is not None, "the sentinel never came"
            got.append(envelope)
        assert {e.type for e in got} == {"LoopFailed"}, [e.signal for e in got]


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


@pytest.mark.parametrize("limit", [0, -3, 2.5, True, signal_batch.MAX_BATCH + 1])
def test_runs_refuses_a_limit_no_batch_can_have(limit: object) -> None:
    """runs(limit=0) or a negative limit gave runs of one, 2.5 runs of three, and a limit
    above MAX_BATCH runs that encode_batch then refuses: a bad limit is now named."""
    envelopes = signal_batch.envelop_many(
        [signals.PatchRejected(reason=str(i)) for i in range(5)], source="t"
    )
    with pytest.raises(ValueError, match=f"run limit must be an int from 1 to 256, not {limit}"):
        list(signal_batch.runs(envelopes, limit))  # type: ignore[arg-type]


LATE_PUBLISHER = """
import sys
from ipc import bus, signals
with bus.Publisher(sys.argv[1], source="late") as pub:
    pub.wait_connected(timeout=30)
    for i in range(int(sys.argv[2])):
        pub.publish(signals.PatchRejected(reason=f"late {i}"), timeout=30)
    sys.stdin.read()  # until the test is done: its sends must not be cut by the exit
"""


def test_bus_waits_take_math_inf_for_ever(procs: Processes, runtime: Path) -> None:
    """Waiting for ever is spelled math.inf (STYLE 5); every bus wait turned it into
    int(inf * 1000) for zmq's poll and raised OverflowError at once."""
    procs.broker(runtime)  # it takes a Python start to come up: both sides wait for it
    with bus.Publisher(runtime, source="test") as pub, bus.Subscriber(runtime) as sub:
        sub.wait_connected(timeout=math.inf)
        pub.wait_connected(timeout=math.inf)
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        while sub.recv(timeout=0) is not None:
            pass
        # a publisher that only starts now: the receives below wait in poll for it
        procs.start(
            [sys.executable, "-c", LATE_PUBLISHER, str(runtime), "2"], stdin=subprocess.PIPE
        )
        first = sub.recv(timeout=math.inf)
        assert first is not None and first.signal.reason == "late 0"
        assert [e.signal.reason for e in sub.recv_many(1, timeout=math.inf)] == ["late 1"]


@pytest.mark.parametrize("limit", [2.5, "3", None])
def test_recv_many_names_a_limit_that_is_no_count(runtime: Path, limit: object) -> None:
    """recv_many now reads at most `limit` messages with range(limit): a float limit
    must be refused by name, not with range's "'float' object cannot be interpreted"."""
    message = f"recv_many takes at least 1 signal, not {limit!r}"
    with bus.Subscriber(runtime) as sub, pytest.raises(ValueError, match=message):
        sub.recv_many(limit, timeout=0)  # type: ignore[arg-type]
